"""The languages the bot speaks: their codes and names, listed once."""

from __future__ import annotations

NAMES = {"en": "English", "fr": "Français", "ar": "العربية", "es": "Español", "sw": "Kiswahili"}
LANGUAGES = tuple(NAMES)
