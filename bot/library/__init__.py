"""The guideline library: reading documents into passages, and choosing the passages for a question."""
