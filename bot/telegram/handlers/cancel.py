"""/cancel: withdraw the user's pending question."""

from __future__ import annotations

from telegram import Update

from bot.flows import ask
from bot.telegram import texts
from bot.telegram.context import BotContext
from bot.telegram.i18n import t
from bot.telegram.identity import pseudonym_of, user_language


async def cancel(update: Update, context: BotContext) -> None:
    """Take the pending question off the queue and say whether there was one."""
    message, res = update.effective_message, context.resources
    if message is None or update.effective_user is None:
        return
    cancelled = await ask.cancel(res, pseudonym_of(update, res), message.chat.id)
    await message.reply_text(
        t(texts.CANCELLED if cancelled else texts.NOTHING_TO_CANCEL, user_language(update, res))
    )
