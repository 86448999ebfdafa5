"""The error handler: log the error's kind (never the text) and tell the user kindly."""

from __future__ import annotations

import structlog
from telegram import Update
from telegram.ext import ContextTypes

from bot import resources, texts
from bot.i18n import t
from bot.identity import user_language

log = structlog.get_logger("bot.errors")


async def on_error(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Report a failed handler; the user hears that nothing was lost and to try again."""
    error = context.error
    log.error("handler.failed", error=type(error).__name__, update_id=getattr(update, "update_id", None))
    if isinstance(update, Update) and update.effective_chat is not None:
        try:
            language = user_language(update, resources.get(context.bot_data))
            await context.bot.send_message(update.effective_chat.id, t(texts.TEMPORARY_ERROR, language))
        except Exception as exc:
            log.warning("error_reply.failed", error=type(exc).__name__)
