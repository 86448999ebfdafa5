"""How the console hands a clinician's reply to the bot: the replies stream in Redis."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from storage.queue import queue_from_settings
from storage.queue.cases import CaseQueue, CaseReplyMessage
from storage.queue.connection import connect
from storage.settings import StorageSettings

ReplyOutbox = Callable[[CaseReplyMessage], Awaitable[None]]


def redis_outbox(redis_url: str, settings: StorageSettings) -> ReplyOutbox:
    """An outbox that opens a client for each reply (the console holds no connection when idle)."""

    async def publish(reply: CaseReplyMessage) -> None:
        redis = await connect(redis_url)
        try:
            await CaseQueue(queue_from_settings(redis, settings)).publish(reply)
        finally:
            await redis.aclose()

    return publish
