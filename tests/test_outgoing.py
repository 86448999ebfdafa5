"""Telegram's outgoing limits (bot.telegram.outgoing): answers first, shared by two bots through real Redis.

Real python-telegram-bot ExtBots send to the Bot API stand-in; the limits live in the test Redis.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from redis.asyncio import Redis
from telegram.ext import ExtBot

from bot.telegram.outgoing import (
    ACKNOWLEDGEMENT,
    ANSWER,
    CHAT_ACTION,
    OVERALL_BURST,
    OVERALL_PER_S,
    OutgoingLimiter,
    Skipped,
)
from tests.support.redis_server import QueueNames
from tests.support.telegram_stub import TelegramStub

CHAT = 4242


@asynccontextmanager
async def limited_bot(stub: TelegramStub, redis: Redis | None, namespace: str) -> AsyncIterator[Any]:
    """An ExtBot on the stand-in whose limiter shares its buckets through ``redis`` (None: local)."""
    for chat in [CHAT + n for n in range(45)] + [-1001] + [-100 - n for n in range(8)]:
        stub.add_chat(chat, chat_type="private" if chat > 0 else "group", title=None if chat > 0 else "team")
    limiter = OutgoingLimiter(max_retries=3)
    if redis is not None:
        limiter.attach(redis, namespace, lambda chat: f"p{abs(chat)}")
    bot: ExtBot[Any] = ExtBot(stub.token, base_url=stub.base_url, rate_limiter=limiter)
    async with bot:
        yield bot


def texts_in_order(stub: TelegramStub) -> list[str]:
    return [str(call.params.get("text")) for call in stub.calls_of("sendMessage") if call.ok]


async def until(condition: Any, timeout: float = 30.0) -> None:
    """Wait (polling) until ``condition()`` is true."""
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 - state of the limiter and the stand-in
            await asyncio.sleep(0.005)


async def test_an_answer_goes_before_the_acknowledgements_queued_ahead_of_it(
    telegram_stub: TelegramStub, redis_client: Redis, queue_names: QueueNames
) -> None:
    async with limited_bot(telegram_stub, redis_client, queue_names.namespace) as bot:
        limiter: OutgoingLimiter = bot.rate_limiter
        acks = [
            asyncio.create_task(bot.send_message(CHAT, f"ack {n}", rate_limit_args=ACKNOWLEDGEMENT))
            for n in range(60)
        ]
        typing = asyncio.create_task(bot.send_chat_action(CHAT, "typing", rate_limit_args=CHAT_ACTION))
        await until(lambda: limiter.waiting >= 40)  # most acknowledgements wait their turn
        answer = asyncio.create_task(bot.send_message(CHAT, "the answer", rate_limit_args=ANSWER))
        await asyncio.gather(answer, *acks)
        with pytest.raises(Skipped):
            await typing  # messages were waiting: "typing…" is not sent late
    order = texts_in_order(telegram_stub)
    sent_before = order.index("the answer")
    assert sent_before <= 60 - 40 + 2, f"{sent_before} acknowledgements went before the answer"
    assert telegram_stub.calls_of("sendChatAction") == []


async def test_two_bot_processes_share_one_overall_limit(
    telegram_stub: TelegramStub, redis_url: str, queue_names: QueueNames
) -> None:
    """Two bots (two clients of one Redis, as two processes) together stay near 30 messages/s."""
    first, second = Redis.from_url(redis_url), Redis.from_url(redis_url)
    try:
        async with (
            limited_bot(telegram_stub, first, queue_names.namespace) as one,
            limited_bot(telegram_stub, second, queue_names.namespace) as two,
        ):
            await asyncio.gather(
                *(bot.send_message(CHAT + n, f"m {n}") for n in range(45) for bot in (one, two))
            )
    finally:
        await first.aclose()
        await second.aclose()
    times = sorted(call.at for call in telegram_stub.calls_of("sendMessage"))
    assert len(times) == 90
    busiest = max(sum(1 for t in times if start <= t < start + 1.0) for start in times)
    # one bucket: at most the burst plus the rate in any second (two unshared buckets would allow twice)
    assert busiest <= OVERALL_BURST + OVERALL_PER_S + 2, f"{busiest} messages in one second"


async def test_flood_control_pauses_the_other_bot_too(
    telegram_stub: TelegramStub, redis_url: str, queue_names: QueueNames
) -> None:
    """A 429 seen by one bot holds the other bot's messages for the retry_after, then both go."""
    first, second = Redis.from_url(redis_url), Redis.from_url(redis_url)
    try:
        async with (
            limited_bot(telegram_stub, first, queue_names.namespace) as one,
            limited_bot(telegram_stub, second, queue_names.namespace) as two,
        ):
            telegram_stub.fail_next("sendMessage", error_code=429, retry_after=2)
            await one.send_message(CHAT, "refused once, then sent")
            refused = next(c for c in telegram_stub.calls_of("sendMessage") if not c.ok).at
            await two.send_message(CHAT, "from the other bot")
    finally:
        await first.aclose()
        await second.aclose()
    sent = {str(c.params["text"]): c.at for c in telegram_stub.calls_of("sendMessage") if c.ok}
    assert set(sent) == {"refused once, then sent", "from the other bot"}
    assert sent["refused once, then sent"] - refused >= 2.0
    assert sent["from the other bot"] - refused >= 1.9, "the other bot did not respect the pause"


async def test_messages_still_go_out_while_redis_is_away(
    telegram_stub: TelegramStub, queue_names: QueueNames
) -> None:
    """Nothing listens where the limiter's Redis should be: it limits locally and sends everything."""
    gone = Redis.from_url("redis://127.0.0.1:9", socket_connect_timeout=0.5)
    try:
        async with limited_bot(telegram_stub, gone, queue_names.namespace) as bot:
            await asyncio.gather(*(bot.send_message(-100 - n, f"group {n}") for n in range(8)))
            assert bot.rate_limiter.local
    finally:
        await gone.aclose()
    assert sorted(texts_in_order(telegram_stub)) == sorted(f"group {n}" for n in range(8))


async def test_a_group_gets_at_most_its_burst_at_once(
    telegram_stub: TelegramStub, redis_client: Redis, queue_names: QueueNames
) -> None:
    """Six messages to one group: the first five go at once, the sixth at the group's pace."""
    async with limited_bot(telegram_stub, redis_client, queue_names.namespace) as bot:
        sending = [asyncio.create_task(bot.send_message(-1001, f"g {n}")) for n in range(6)]
        await until(lambda: len(telegram_stub.calls_of("sendMessage")) >= 5)
        first_five = telegram_stub.calls_of("sendMessage")[4].at
        await asyncio.gather(*sending)
    calls = telegram_stub.calls_of("sendMessage")
    assert len(calls) == 6
    assert calls[5].at - first_five >= 3.0, "the sixth message to the group did not wait its turn"


async def test_in_a_busy_group_typing_is_skipped_and_the_answer_goes_first(
    telegram_stub: TelegramStub, redis_client: Redis, queue_names: QueueNames
) -> None:
    """The group's burst is used: "typing…" is not sent at all, and an answer passes an older ack."""
    async with limited_bot(telegram_stub, redis_client, queue_names.namespace) as bot:
        await asyncio.gather(*(bot.send_message(-1001, f"g {n}") for n in range(5)))
        with pytest.raises(Skipped):
            await bot.send_chat_action(-1001, "typing", rate_limit_args=CHAT_ACTION)
        ack = asyncio.create_task(bot.send_message(-1001, "ack", rate_limit_args=ACKNOWLEDGEMENT))
        await until(lambda: any(gate.waiting for gate in bot.rate_limiter._groups.values()))
        answer = asyncio.create_task(bot.send_message(-1001, "answer", rate_limit_args=ANSWER))
        await asyncio.gather(ack, answer)
    assert telegram_stub.calls_of("sendChatAction") == []
    assert texts_in_order(telegram_stub)[5:] == ["answer", "ack"]
