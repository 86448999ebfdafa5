"""Connecting to a Redis server (the queue's and the bot's state): a client that answered PING."""

from __future__ import annotations

from redis import Redis as SyncRedis
from redis.asyncio import Redis
from redis.exceptions import RedisError

from storage.errors import RedisUnavailableError
from storage.queue.backoff import Backoff
from storage.urls import redact_url


def answers_ping(url: str, timeout: float = 1.0) -> bool:
    """Whether a Redis server answers PING at ``url`` (blocking, for start-up checks)."""
    client = SyncRedis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        return bool(client.ping())
    except (RedisError, OSError):
        return False
    finally:
        client.close()


async def answers_ping_async(url: str, timeout: float = 1.0) -> bool:
    """Whether a Redis server answers PING at ``url``, without blocking the event loop."""
    client: Redis = Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        return bool(await client.ping())
    except (RedisError, OSError):
        return False
    finally:
        await client.aclose()


async def connect(url: str, *, attempts: int = 1) -> Redis:
    """A decoded-responses client that answered PING, or RedisUnavailableError."""
    client: Redis = Redis.from_url(url, decode_responses=True, health_check_interval=30)
    backoff = Backoff(first_s=0.2, cap_s=2.0)
    for attempt in range(attempts):
        try:
            await client.ping()
            return client
        except (RedisError, OSError) as exc:
            if attempt == attempts - 1:
                await client.aclose()
                raise RedisUnavailableError(redact_url(url), type(exc).__name__) from None
            await backoff.wait()
    raise AssertionError("unreachable")
