"""/lang: choose the language the bot speaks (buttons, or ``/lang fr``); recall it on every update."""

from __future__ import annotations

import structlog
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError
from telegram import Update

from bot.telegram import texts
from bot.telegram.context import BotContext
from bot.telegram.i18n import LANGUAGES, NAMES, t
from bot.telegram.identity import (
    current_user,
    pseudonym_of,
    recall_language,
    remember_language,
    user_language,
)
from bot.telegram.keyboards import language_keyboard, parse_language

log = structlog.get_logger("bot.lang")


async def recall(update: Update, context: BotContext) -> None:
    """Before everything: the sender's chosen language, from the database or Redis (shared state).

    Without them (an outage), the Telegram language is used and the update goes on.
    """
    if update.effective_user is None:
        return
    res = context.resources
    try:
        async with res.sessionmaker() as session:
            await recall_language(session, res, update)
    except (SQLAlchemyError, RedisError, OSError) as exc:
        log.warning("language.recall_failed", error=type(exc).__name__)


async def lang(update: Update, context: BotContext) -> None:
    """Show the language buttons, or set the language given as argument."""
    message, res = update.effective_message, context.resources
    if message is None or update.effective_user is None:
        return
    choice = (context.args or [""])[0].lower()
    if not choice:
        await message.reply_text(
            t(texts.LANG_CHOOSE, user_language(update, res)), reply_markup=language_keyboard(NAMES)
        )
        return
    if choice not in LANGUAGES:
        await message.reply_text(t(texts.LANG_UNKNOWN, user_language(update, res)))
        return
    await _set(update, context, choice)
    await message.reply_text(t(texts.LANG_SET, choice))


async def on_language_button(update: Update, context: BotContext) -> None:
    """A language button: set it and confirm in that language."""
    query = update.callback_query
    if query is None:
        return
    choice = parse_language(query.data)
    if choice is None:
        await query.answer(t(texts.FEEDBACK_STALE, user_language(update, context.resources)))
        return
    await _set(update, context, choice)
    await query.answer()
    await query.edit_message_text(t(texts.LANG_SET, choice))


async def _set(update: Update, context: BotContext, language: str) -> None:
    """Store the choice on the user row; without one (no consent choice yet) in Redis, for a while."""
    res = context.resources
    pseudonym = pseudonym_of(update, res)
    async with res.sessionmaker.begin() as session:
        user = await current_user(session, res, update)
        if user is not None:
            user.language = language
    if user is None:
        await res.state.choose_language(pseudonym, language)
    remember_language(pseudonym, language)
