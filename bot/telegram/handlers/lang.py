"""/lang: choose the language the bot speaks (buttons, or ``/lang fr``); recall it on every update."""

from __future__ import annotations

import structlog
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError
from telegram import Update

from bot.flows import language
from bot.languages import LANGUAGES, NAMES
from bot.telegram import texts
from bot.telegram.context import BotContext
from bot.telegram.i18n import t
from bot.telegram.identity import pseudonym_of, user_language
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
        await language.recall(res, pseudonym_of(update, res))
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
    await language.choose(res, pseudonym_of(update, res), choice)
    await message.reply_text(t(texts.LANG_SET, choice))


async def on_language_button(update: Update, context: BotContext) -> None:
    """A language button: set it and confirm in that language."""
    query, res = update.callback_query, context.resources
    if query is None:
        return
    choice = parse_language(query.data)
    if choice is None:
        await query.answer(t(texts.FEEDBACK_STALE, user_language(update, res)))
        return
    await language.choose(res, pseudonym_of(update, res), choice)
    await query.answer()
    await query.edit_message_text(t(texts.LANG_SET, choice))
