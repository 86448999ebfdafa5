"""Kind replies to what the bot cannot use: other media, edits, unknown commands, unreadable text.

Also buttons pressed outside a chat (inline mode).
"""

from __future__ import annotations

import structlog
from telegram import Update
from telegram.ext import ApplicationHandlerStop

from bot.resources import Resources
from bot.telegram import texts
from bot.telegram.cleaning import clean
from bot.telegram.context import BotContext
from bot.telegram.i18n import t
from bot.telegram.identity import user_language

log = structlog.get_logger("bot.fallback")


def _say(update: Update, context: BotContext, text: str) -> str:
    """``text`` in the sender's language."""
    return t(text, user_language(update, context.resources))


async def non_text(update: Update, context: BotContext) -> None:
    """Photos, voice notes, stickers, files, locations: ask for text."""
    if update.effective_message is not None:
        await update.effective_message.reply_text(_say(update, context, texts.NON_TEXT))


async def edited(update: Update, context: BotContext) -> None:
    """An edited message: the first version stands; say so."""
    if update.edited_message is not None and update.edited_message.chat.type == "private":
        await update.edited_message.reply_text(_say(update, context, texts.EDITED))


async def unknown_command(update: Update, context: BotContext) -> None:
    """A command the bot does not have: point to /help."""
    if update.effective_message is not None:
        await update.effective_message.reply_text(_say(update, context, texts.UNKNOWN_COMMAND))


async def readable(update: Update, res: Resources, text: str, language: str) -> str:
    """``text`` without the characters nothing can store (lone surrogates, NUL); say what was left out.

    Said once per update, also when the update is handled again after an outage.
    """
    cleaned = clean(text)
    message = update.effective_message
    if cleaned.notices and message is not None and await res.updates.once(f"cleaned:{update.update_id}"):
        log.info("text.cleaned", surrogates=cleaned.surrogates, nuls=cleaned.nuls)
        for notice in cleaned.notices:
            await message.reply_text(t(notice, language))
    return cleaned.text


async def detached_button(update: Update, context: BotContext) -> None:
    """A button on a message the bot cannot see (inline mode): say where buttons work; nothing else runs."""
    query = update.callback_query
    if query is None or query.message is not None:
        return
    log.info("callback.without_message")
    await query.answer(_say(update, context, texts.BUTTON_NEEDS_CHAT), show_alert=True)
    raise ApplicationHandlerStop
