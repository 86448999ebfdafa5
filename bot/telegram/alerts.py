"""Messages to the on-call and admin chats, and the monitor job that sends the admin alerts."""

from __future__ import annotations

import structlog
from telegram import Bot
from telegram.error import TelegramError

from bot.flows import alerts
from bot.telegram.context import BotContext

log = structlog.get_logger("bot.alerts")


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


async def monitor(context: BotContext) -> None:
    """One round of the admin chat's checks (a repeating job while ADMIN_CHAT_ID is set)."""
    res = context.resources

    async def notify(text: str) -> bool:
        return await alert(context.bot, res.settings.admin_chat_id, text)

    await alerts.check(res, notify)
