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


def feedback_keyboard(question_id: str, language: str = "en") -> InlineKeyboardMarkup:
    """👍 / 👎 under an answer, and "Ask a clinician" next to them."""
    return InlineKeyboardMarkup(
        [[InlineKeyboardButton("👍", callback_data=f"fb:up:{question_id}"),
          InlineKeyboardButton("👎", callback_data=f"fb:down:{question_id}"),
          clinician_button(question_id, language)]]
    )  # fmt: skip


_HANDOVER_RE = re.compile(r"^hv:(ask|yes|no):([0-9a-f]{8,40})$")
_CASE_RATING_RE = re.compile(r"^hv:(up|down):(\d{1,12})$")


def clinician_button(question_id: str, language: str) -> InlineKeyboardButton:
    """The "Ask a clinician" button of a question."""
    return InlineKeyboardButton(t(texts.HANDOVER_BUTTON, language), callback_data=f"hv:ask:{question_id}")


def clinician_keyboard(question_id: str, language: str) -> InlineKeyboardMarkup:
    """Only the "Ask a clinician" button (under the danger-sign referral)."""
    return InlineKeyboardMarkup([[clinician_button(question_id, language)]])


def handover_consent_keyboard(question_id: str, language: str) -> InlineKeyboardMarkup:
    """Yes / no to a clinician of the study team reading this one question."""
    return InlineKeyboardMarkup(
        [[InlineKeyboardButton(t(texts.HANDOVER_YES, language), callback_data=f"hv:yes:{question_id}")],
         [InlineKeyboardButton(t(texts.HANDOVER_NO, language), callback_data=f"hv:no:{question_id}")]]
    )  # fmt: skip


def parse_handover(data: str | None) -> tuple[str, str] | None:
    """``(action, question_id)`` of a handover button (ask, yes, no), or None."""
    match = _HANDOVER_RE.match(data or "")
    return (match.group(1), match.group(2)) if match else None


def case_rating_keyboard(case_id: int) -> InlineKeyboardMarkup:
    """👍 / 👎 under a clinician's reply."""
    return InlineKeyboardMarkup(
        [[InlineKeyboardButton("👍", callback_data=f"hv:up:{case_id}"),
          InlineKeyboardButton("👎", callback_data=f"hv:down:{case_id}")]]
    )  # fmt: skip


def parse_case_rating(data: str | None) -> tuple[str, int] | None:
    """``(rating, case_id)`` of a rating under a clinician's reply, or None."""
    match = _CASE_RATING_RE.match(data or "")
    return (match.group(1), int(match.group(2))) if match else None


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
