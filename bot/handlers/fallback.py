"""Kind replies to what the bot cannot use: other media, edits, unknown commands."""

from __future__ import annotations

from telegram import Update
from telegram.ext import ContextTypes

from bot import resources, texts
from bot.i18n import t
from bot.identity import user_language


def _say(update: Update, context: ContextTypes.DEFAULT_TYPE, text: str) -> str:
    """``text`` in the sender's language."""
    return t(text, user_language(update, resources.get(context.bot_data)))


async def non_text(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Photos, voice notes, stickers, files, locations: ask for text."""
    if update.effective_message is not None:
        await update.effective_message.reply_text(_say(update, context, texts.NON_TEXT))


async def edited(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """An edited message: the first version stands; say so."""
    if update.edited_message is not None and update.edited_message.chat.type == "private":
        await update.edited_message.reply_text(_say(update, context, texts.EDITED))


async def unknown_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A command the bot does not have: point to /help."""
    if update.effective_message is not None:
        await update.effective_message.reply_text(_say(update, context, texts.UNKNOWN_COMMAND))
