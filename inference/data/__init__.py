"""Data files shipped with the package (the example evaluation questions)."""
