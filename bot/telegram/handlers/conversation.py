"""/new: start a new conversation (the earlier turns are forgotten at once) and say so."""

from __future__ import annotations

import structlog
from telegram import Update

from bot.flows.conversation import forget_conversations
from bot.telegram import texts
from bot.telegram.context import BotContext
from bot.telegram.i18n import t
from bot.telegram.identity import pseudonym_of, user_language

log = structlog.get_logger("bot.conversation")


async def new_conversation(update: Update, context: BotContext) -> None:
    """Clear the sender's conversation memory and confirm."""
    message, res = update.effective_message, context.resources
    if message is None or update.effective_user is None:
        return
    cleared = await forget_conversations(res, pseudonym_of(update, res))
    log.info("conversation.new", keys=cleared)
    await message.reply_text(t(texts.NEW_CONVERSATION, user_language(update, res)))
