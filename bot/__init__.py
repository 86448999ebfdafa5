"""The Meditron field bot: Telegram side (``telegram``), use cases (``flows``), console and command line."""
