"""Messages to the on-call and admin chats: pseudonyms and rule names only, never message text."""

from __future__ import annotations

import structlog
from telegram import Bot
from telegram.error import TelegramError

log = structlog.get_logger("bot.telegram.alerts")


async def alert(bot: Bot, chat_id: int | None, text: str) -> bool:
    """Send an alert if a chat is configured; a failure is logged, never raised."""
    if chat_id is None:
        return False
    try:
        await bot.send_message(chat_id, text)
    except TelegramError as exc:
        log.warning("alert.failed", error=type(exc).__name__)
        return False
    return True
