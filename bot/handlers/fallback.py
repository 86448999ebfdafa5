"""Kind replies to what the bot cannot use: other media, edits, unknown commands, groups."""

from __future__ import annotations

from telegram import Update
from telegram.ext import ContextTypes

from bot import texts


async def non_text(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Photos, voice notes, stickers, files, locations: ask for text."""
    if update.effective_message is not None:
        await update.effective_message.reply_text(texts.NON_TEXT)


async def edited(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """An edited message: the first version stands; say so."""
    if update.edited_message is not None and update.edited_message.chat.type == "private":
        await update.edited_message.reply_text(texts.EDITED)


async def unknown_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A command the bot does not have: point to /help."""
    if update.effective_message is not None:
        await update.effective_message.reply_text(texts.UNKNOWN_COMMAND)


async def group_text(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Questions in groups come later; for now say where to ask."""
    message = update.effective_message
    if message is not None and message.text and context.bot.username in message.text:
        await message.reply_text(texts.GROUP_PRIVATE_ONLY)
