"""Inline keyboards and the callback data they carry (validated on the way back)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from bot.flows.consent import CHOICES
from bot.languages import LANGUAGES
from bot.telegram import texts
from bot.telegram.i18n import t

_CONSENT_RE = re.compile(rf"^consent:({'|'.join(CHOICES)}):([a-z]{{2}}-\d{{1,4}})$")


@dataclass(frozen=True)
class ConsentChoice:
    """A consent button press: which choice, for which text version."""

    choice: str
    version: str


def consent_keyboard(version: str, language: str) -> InlineKeyboardMarkup:
    """The three consent buttons in ``language``, one per row (easy to hit on a small screen)."""
    labels = (texts.BUTTON_BOTH, texts.BUTTON_SERVICE, texts.BUTTON_DECLINE)
    return InlineKeyboardMarkup(
        [[InlineKeyboardButton(t(label, language), callback_data=f"consent:{choice}:{version}")]
         for choice, label in zip(CHOICES, labels, strict=True)]
    )  # fmt: skip


def parse_consent(data: str | None) -> ConsentChoice | None:
    """The choice encoded in callback data, or None if this bot did not make it."""
    match = _CONSENT_RE.match(data or "")
    return ConsentChoice(match.group(1), match.group(2)) if match else None


_FEEDBACK_RE = re.compile(r"^fb:(up|down):([0-9a-f]{8,40})$")
_LANG_RE = re.compile(rf"^lang:({'|'.join(LANGUAGES)})$")


def feedback_keyboard(question_id: str) -> InlineKeyboardMarkup:
    """👍 / 👎 under an answer."""
    return InlineKeyboardMarkup(
        [[InlineKeyboardButton("👍", callback_data=f"fb:up:{question_id}"),
          InlineKeyboardButton("👎", callback_data=f"fb:down:{question_id}")]]
    )  # fmt: skip


def parse_feedback(data: str | None) -> tuple[str, str] | None:
    """``(rating, question_id)`` from feedback callback data, or None if this bot did not make it."""
    match = _FEEDBACK_RE.match(data or "")
    return (match.group(1), match.group(2)) if match else None


def language_keyboard(names: dict[str, str]) -> InlineKeyboardMarkup:
    """One button per supported language."""
    return InlineKeyboardMarkup(
        [[InlineKeyboardButton(name, callback_data=f"lang:{code}")] for code, name in names.items()]
    )


def parse_language(data: str | None) -> str | None:
    """The language code of a /lang button, or None."""
    match = _LANG_RE.match(data or "")
    return match.group(1) if match else None
