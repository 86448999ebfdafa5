"""/consent, /withdraw and /forget: parse the command, let the rights flow act, word the result."""

from __future__ import annotations

from telegram import Update

from bot.flows import consent, rights
from bot.telegram import texts
from bot.telegram.context import BotContext
from bot.telegram.i18n import t
from bot.telegram.identity import language_of, pseudonym_of, user_language
from bot.telegram.keyboards import consent_keyboard
from storage.models import ConsentEvent

_SHOWN = {"granted": texts.RIGHTS_YES, "declined": texts.RIGHTS_NO, "withdrawn": texts.RIGHTS_WITHDRAWN}


def _value(event: ConsentEvent | None, language: str) -> str:
    """A consent value in words."""
    return t(_SHOWN.get(event.new_value if event else "", texts.RIGHTS_NOT_CHOSEN), language)


def _status(status: rights.ConsentStatus, language: str) -> str:
    """What the user agreed to (under text ``version``), in the user's language."""
    version, latest = status.version, status.latest
    newest = max(latest.values(), key=lambda e: e.id, default=None)
    date = t(texts.RIGHTS_SINCE, language).format(date=f"{newest.created_at:%Y-%m-%d}") if newest else ""
    text = t(texts.RIGHTS_STATUS, language).format(
        service=_value(latest.get("service"), language), research=_value(latest.get("research"), language),
        version=version or "-", date=date,
    )  # fmt: skip
    if status.outdated:
        text += "\n\n" + t(texts.RIGHTS_OUTDATED, language)
    return text


async def consent_command(update: Update, context: BotContext) -> None:
    """Show what the user agreed to, the current text and the buttons to change it."""
    message, res = update.effective_message, context.resources
    if message is None or update.effective_user is None:
        return
    language = user_language(update, res)
    status = _status(await rights.status(res, pseudonym_of(update, res)), language)
    current = consent.current_text(res, language)
    await message.reply_text(
        f"{status}\n\n{current.text}", reply_markup=consent_keyboard(current.version, language)
    )


async def withdraw(update: Update, context: BotContext) -> None:
    """Withdraw research consent, erase the user's kept texts and held question; confirm in one message."""
    message, res = update.effective_message, context.resources
    if message is None or update.effective_user is None:
        return
    erased = await rights.withdraw(res, pseudonym_of(update, res), language_of(update))
    language = user_language(update, res)
    done = texts.WITHDRAW_DONE if erased.questions else texts.WITHDRAW_NOTHING
    await message.reply_text(t(done, language).format(count=erased.questions) + _held_note(erased, language))


def _held_note(erased: rights.Erased, language: str) -> str:
    """A line saying that the question waiting in a group was deleted too (when there was one)."""
    return "\n\n" + t(texts.HELD_QUESTION_ERASED, language) if erased.held else ""


async def forget(update: Update, context: BotContext) -> None:
    """Erase everything about the user and end their service consent; confirm in one message."""
    message, res = update.effective_message, context.resources
    if message is None or update.effective_user is None:
        return
    language = user_language(update, res)
    erased = await rights.forget(res, pseudonym_of(update, res), message.chat.id, language_of(update))
    await message.reply_text(
        t(texts.FORGET_DONE, language).format(count=erased.questions) + _held_note(erased, language)
    )
