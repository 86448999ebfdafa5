"""Inline keyboards and the callback data they carry (validated on the way back)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from bot import texts

CHOICES = ("both", "service", "decline")
_CONSENT_RE = re.compile(r"^consent:(both|service|decline):([a-z]{2}-\d{1,4})$")


@dataclass(frozen=True)
class ConsentChoice:
    """A consent button press: which choice, for which text version."""

    choice: str
    version: str


def consent_keyboard(version: str) -> InlineKeyboardMarkup:
    """The three consent buttons, one per row (easy to hit on a small screen)."""
    labels = (texts.BUTTON_BOTH, texts.BUTTON_SERVICE, texts.BUTTON_DECLINE)
    return InlineKeyboardMarkup(
        [[InlineKeyboardButton(label, callback_data=f"consent:{choice}:{version}")]
         for choice, label in zip(CHOICES, labels, strict=True)]
    )  # fmt: skip


def parse_consent(data: str | None) -> ConsentChoice | None:
    """The choice encoded in callback data, or None if this bot did not make it."""
    match = _CONSENT_RE.match(data or "")
    return ConsentChoice(match.group(1), match.group(2)) if match else None
