"""The webhook listener alone, on the test Redis: what it stores, refuses and answers (the HTTP status)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from redis.asyncio import Redis

from bot.telegram.webhook import SECRET_HEADER, WebhookConfig, WebhookListener
from storage.queue import QueueNames
from storage.queue.updates import UpdateLog

SECRET = "intake-secret"


@pytest.fixture
async def listener(
    redis_url: str, queue_names: QueueNames, redis_client: Redis
) -> AsyncIterator[tuple[str, UpdateLog]]:
    """A listener on a free port storing into this test's namespace; its URL and that update log."""
    config = WebhookConfig("https://example.org/hook", "127.0.0.1", 0, SECRET)
    server = WebhookListener(config, lambda: UpdateLog(Redis.from_url(redis_url), queue_names.namespace))
    server.start()
    try:
        yield f"http://127.0.0.1:{server.port}/hook", UpdateLog(redis_client, queue_names.namespace)
    finally:
        server.stop()


async def test_an_update_is_stored_once_however_often_it_comes(listener: tuple[str, UpdateLog]) -> None:
    url, updates = listener
    update = {"update_id": 77, "message": {"message_id": 1, "date": 0, "chat": {"id": 5, "type": "private"}}}
    async with httpx.AsyncClient() as client:
        for _ in range(3):
            response = await client.post(url, json=update, headers={SECRET_HEADER: SECRET})
            assert response.status_code == 200
    assert await updates.backlog() == 1
    await updates.ensure_group()
    (stored,) = await updates.read("c", pending=False, block_ms=10)
    assert stored.update_id == 77 and stored.payload == update


async def test_what_is_not_an_update_from_telegram_is_refused_and_not_stored(
    listener: tuple[str, UpdateLog],
) -> None:
    url, updates = listener
    good = {"update_id": 78}
    async with httpx.AsyncClient() as client:
        assert (await client.post(url, json=good)).status_code == 403
        assert (await client.post(url, json=good, headers={SECRET_HEADER: SECRET + "x"})).status_code == 403
        assert (await client.post(url, json=good, headers={SECRET_HEADER: ""})).status_code == 403
        with_secret = {SECRET_HEADER: SECRET}
        assert (await client.post(url, content=b"{not json", headers=with_secret)).status_code == 400
        assert (await client.post(url, json=[good], headers=with_secret)).status_code == 400
        assert (await client.post(url, json={"message": {}}, headers=with_secret)).status_code == 400
        assert (await client.get(url, headers=with_secret)).status_code == 405
    assert await updates.backlog() == 0
