"""The error handler: log the error kind (never the text); retry on outages, else tell the user once."""

from __future__ import annotations

import structlog
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from telegram import Update
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter

from bot.telegram import texts
from bot.telegram.context import BotContext
from bot.telegram.i18n import t
from bot.telegram.identity import user_language
from bot.telegram.ingest import retry_later
from storage.errors import DatabaseUnavailableError, RedisUnavailableError

log = structlog.get_logger("bot.errors")

INFRASTRUCTURE = (
    RedisConnectionError,
    RedisTimeoutError,
    OperationalError,
    InterfaceError,
    DatabaseUnavailableError,
    RedisUnavailableError,
    ConnectionError,
    TimeoutError,
    OSError,
)


def outage_of(error: BaseException | None) -> str | None:
    """ "storage" or "telegram" when ``error`` is a passing outage worth handling the update again."""
    if isinstance(error, DBAPIError) and error.connection_invalidated:
        return "storage"
    if isinstance(error, INFRASTRUCTURE):
        return "storage"
    if isinstance(error, RetryAfter) or (
        isinstance(error, NetworkError) and not isinstance(error, BadRequest | Forbidden)
    ):
        return "telegram"
    return None


# Telegram's answers when an update is handled again after an outage: what it asked was done before.
ALREADY_DONE = ("message is not modified", "query is too old", "query id is invalid")


def already_done(error: BaseException | None) -> bool:
    """Whether Telegram refused a repeat of something the first handling of the update did."""
    return isinstance(error, BadRequest) and any(part in error.message.lower() for part in ALREADY_DONE)


async def on_error(update: object, context: BotContext) -> None:
    """Retry an update that failed on an outage; otherwise tell the user, at most once per update."""
    error = context.error
    update_id = getattr(update, "update_id", None)
    outage = outage_of(error)
    if outage is not None and retry_later(outage):
        log.warning("handler.outage", error=type(error).__name__, update_id=update_id)
        return
    if already_done(error):
        log.info("handler.repeat_refused", error=type(error).__name__, update_id=update_id)
        return
    log.error("handler.failed", error=type(error).__name__, update_id=update_id)
    if not isinstance(update, Update) or update.effective_chat is None:
        return
    try:
        res = context.resources
        if not await res.updates.once(f"error-reply:{update.update_id}"):
            return
        language = user_language(update, res)
        await context.bot.send_message(update.effective_chat.id, t(texts.TEMPORARY_ERROR, language))
    except Exception as exc:
        log.warning("error_reply.failed", error=type(exc).__name__)
