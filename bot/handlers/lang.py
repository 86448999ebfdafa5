"""/lang: choose the language the bot speaks (buttons, or ``/lang fr``); recall it on every update."""

from __future__ import annotations

import structlog
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError
from telegram import Update
from telegram.ext import ContextTypes

from bot import resources, texts
from bot.i18n import LANGUAGES, NAMES, t
from bot.identity import current_user, pseudonym_of, recall_language, user_language
from bot.keyboards import language_keyboard, parse_language

log = structlog.get_logger("bot.lang")


async def recall(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Before everything: the sender's chosen language, from the database or Redis (shared state).

    Without them (an outage), the Telegram language is used and the update goes on.
    """
    if update.effective_user is None:
        return
    res = resources.get(context.bot_data)
    try:
        async with res.sessionmaker() as session:
            await recall_language(session, res, update)
    except (SQLAlchemyError, RedisError, OSError) as exc:
        log.warning("language.recall_failed", error=type(exc).__name__)


async def lang(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Show the language buttons, or set the language given as argument."""
    message, res = update.effective_message, resources.get(context.bot_data)
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


async def on_language_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A language button: set it and confirm in that language."""
    query = update.callback_query
    if query is None:
        return
    choice = parse_language(query.data)
    if choice is None:
        await query.answer(t(texts.FEEDBACK_STALE, user_language(update, resources.get(context.bot_data))))
        return
    await _set(update, context, choice)
    await query.answer()
    await query.edit_message_text(t(texts.LANG_SET, choice))


async def _set(update: Update, context: ContextTypes.DEFAULT_TYPE, language: str) -> None:
    """Store the choice on the user row; without one (no consent choice yet) in Redis, for a while."""
    res = resources.get(context.bot_data)
    pseudonym = pseudonym_of(update, res)
    async with res.sessionmaker.begin() as session:
        user = await current_user(session, res, update)
        if user is not None:
            user.language = language
    if user is None:
        await res.state.choose_language(pseudonym, language)
    res.languages[pseudonym] = language
