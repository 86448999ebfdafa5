"""The consent buttons: parse the choice, let the consent flow record it, confirm or show the current text."""

from __future__ import annotations

from telegram import CallbackQuery, Update

from bot.flows import consent
from bot.resources import Resources
from bot.telegram import texts
from bot.telegram.context import BotContext
from bot.telegram.i18n import t
from bot.telegram.identity import language_of, pseudonym_of, user_language
from bot.telegram.keyboards import consent_keyboard, parse_consent

DONE = {
    "both": texts.CONSENT_BOTH_DONE,
    "service": texts.CONSENT_SERVICE_DONE,
    "decline": texts.CONSENT_DECLINED,
}


async def on_consent_button(update: Update, context: BotContext) -> None:
    """Store a consent choice; forged or stale buttons get the current prompt instead."""
    query = update.callback_query
    if query is None or update.effective_user is None:
        return
    res = context.resources
    language = user_language(update, res)
    choice = parse_consent(query.data)
    erased = None
    if choice is not None:
        erased = await consent.choose(
            res, pseudonym_of(update, res), choice.choice, choice.version, language_of(update)
        )
    if choice is None or erased is None:
        await _stale(query, res, language)
        return
    reply = t(DONE[choice.choice], language)
    if erased:
        reply += "\n\n" + t(texts.RESEARCH_ERASED, language).format(count=erased)
    await query.answer()
    await query.edit_message_text(reply)


async def _stale(query: CallbackQuery, res: Resources, language: str) -> None:
    """Answer a forged or outdated button with the current text and fresh buttons."""
    current = consent.current_text(res, language)
    stale = t(texts.CONSENT_STALE, language)
    await query.answer(stale)
    await query.edit_message_text(
        f"{stale}\n\n{current.text}", reply_markup=consent_keyboard(current.version, language)
    )
