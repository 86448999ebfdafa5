"""Follow-ups go to the worker that answered the conversation's previous turn, and nothing is lost when
that worker is gone: the queue's hand-over on real Redis, then the real bot and two workers."""

from __future__ import annotations

import contextlib
import dataclasses
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from prometheus_client import REGISTRY
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.telegram import texts
from inference.batch import BatchEngine
from storage.models import Answer
from storage.queue import QuestionMessage, Queue
from storage.queue.streams import QueueNames
from tests.support.consent import give_consent
from tests.support.databases import recorded_answers
from tests.support.stack import Stack, answers_per_message, inprocess_worker, polling_bot
from tests.support.tcp_proxy import TcpProxy
from tests.support.telegram_stub import says
from tests.support.waiting import eventually

Sessions = async_sessionmaker[AsyncSession]
ADA = 2101
FIRST = "What is the amoxicillin dose for a 12 kg child with pneumonia, and for how many days?"
FOLLOW_UP = "And if penicillin allergy?"


def _question(holder: str = "") -> QuestionMessage:
    return QuestionMessage(
        question_id=uuid.uuid4().hex, chat_id=42, message_id=7, user="u1", text="And for a 20 kg child?",
        enqueued_at=time.time(), conversation_id="c1", turn=2, holder=holder,
    )  # fmt: skip


async def _held_by(queue: Queue, redis: Redis, consumer: str) -> int:
    summary = await redis.xpending(queue.names.questions, queue.names.workers_group)
    return sum(int(c["pending"]) for c in summary["consumers"] if c["name"] == consumer)


# -- the queue's hand-over --------------------------------------------------------------------------


async def test_a_follow_up_goes_to_its_live_holder_which_reads_it_first(
    queue: Queue, redis_client: Redis
) -> None:
    await queue.ensure_groups()
    await queue.advertise("w-a", 2, ttl_s=30)
    await queue.enqueue(_question(holder="w-a"))
    other = await queue.enqueue(_question())
    [read] = await queue.read_questions("w-b", count=1, block_ms=100)
    assert await queue.route(read, "w-b")
    assert (await _held_by(queue, redis_client, "w-a"), await _held_by(queue, redis_client, "w-b")) == (1, 0)
    taken = await queue.read_questions("w-a", count=2, block_ms=100, own_pending=False)
    assert [d.entry_id for d in taken] == [read.entry_id]  # before the new entry waiting
    assert taken[0].deliveries == 1  # a hand-over is not one more delivery
    assert not await queue.route(taken[0], "w-a")  # the holder answers it
    [new] = await queue.read_questions("w-a", block_ms=100, own_pending=False)
    assert new.entry_id == other.entry_id


async def test_no_hand_over_to_a_gone_or_full_holder_nor_of_a_redelivered_or_foreign_entry(
    queue: Queue, redis_client: Redis
) -> None:
    await queue.ensure_groups()
    await queue.enqueue(_question(holder="w-gone"))
    [gone] = await queue.read_questions("w-b", block_ms=100, own_pending=False)
    assert not await queue.route(gone, "w-b")  # no capacity key: stopped, or silent for 15 s
    await queue.advertise("w-full", 1, ttl_s=30)
    await queue.enqueue(_question())
    await queue.read_questions("w-full", block_ms=100)  # it holds one question: its one slot
    await queue.enqueue(_question(holder="w-full"))
    [full] = await queue.read_questions("w-b", block_ms=100, own_pending=False)
    assert not await queue.route(full, "w-b")
    await queue.advertise("w-free", 1, ttl_s=30)
    await queue.enqueue(_question(holder="w-free"))
    [free] = await queue.read_questions("w-b", block_ms=100, own_pending=False)
    assert not await queue.route(dataclasses.replace(free, deliveries=2), "w-b")  # redelivered: stays
    assert not await queue.route(free, "w-other")  # not that consumer's entry
    assert (
        await _held_by(queue, redis_client, "w-b") == 3 and await _held_by(queue, redis_client, "w-free") == 0
    )
    assert await queue.route(free, "w-b")


async def test_a_handed_over_question_finished_meanwhile_is_not_read_again(queue: Queue) -> None:
    """The holder restarted under its name resumes the entry it was handed (its pending list), answers
    it, and then finds the hand-over's note stale."""
    await queue.ensure_groups()
    await queue.advertise("w-a", 1, ttl_s=30)
    await queue.enqueue(_question(holder="w-a"))
    [read] = await queue.read_questions("w-b", block_ms=100, own_pending=False)
    assert await queue.route(read, "w-b")
    [resumed], _ = await queue.resume("w-a", 10)
    assert resumed.entry_id == read.entry_id
    await queue.drop(resumed)
    assert await queue.read_questions("w-a", block_ms=100, own_pending=False) == []


# -- end to end -------------------------------------------------------------------------------------


@pytest.fixture
async def redis_relay(stack: Stack) -> AsyncIterator[tuple[TcpProxy, str]]:
    """A relay in front of the stack's Redis, and the URL through it."""
    parts = urlsplit(stack.redis_url)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 6379)
    await proxy.start()
    try:
        yield proxy, urlunsplit(parts._replace(netloc=f"127.0.0.1:{proxy.port}"))
    finally:
        await proxy.stop()


async def _answered(stack: Stack, sessionmaker: Sessions, count: int, since: int) -> Answer:
    """The newest answer, once ``count`` are recorded and the newest was sent after call ``since``."""
    await stack.stub.wait_for("sendMessage", says(texts.REMINDER, ADA), since=since, timeout=90)

    async def recorded() -> bool:
        return len(await recorded_answers(sessionmaker)) >= count

    await eventually(recorded, timeout=60)
    return (await recorded_answers(sessionmaker))[-1]


async def _cut_off(proxy: TcpProxy, stack: Stack) -> None:
    """Cut the relay and wait until Redis has dropped every client that came through it (so a read
    blocked there can no longer be handed a new entry)."""
    ports = set(proxy.upstream_ports)
    proxy.cut()
    redis = Redis.from_url(stack.redis_url, decode_responses=True)
    try:

        async def dropped() -> bool:
            clients = await redis.client_list()
            return not any(int(str(c["addr"]).rsplit(":", 1)[1]) in ports for c in clients)

        await eventually(dropped)
    finally:
        await redis.aclose()


def _routed_total() -> float:
    return REGISTRY.get_sample_value("meditron_follow_ups_routed_total") or 0.0


async def _route_follow_up_away(stack: Stack, proxy: TcpProxy, queue: Queue, redis_client: Redis) -> int:
    """With w-one cut off from Redis (still live for a few seconds), Ada's follow-up reaches w-two,
    which hands it to w-one; the index of the stand-in's calls when it was sent."""
    await _cut_off(proxy, stack)
    before = _push(stack, FOLLOW_UP)

    async def handed_over() -> bool:
        return await _held_by(queue, redis_client, "w-one") == 1

    await eventually(handed_over)
    return before


def _on(stack: Stack, claim_idle_ms: int, **changes: Any) -> Stack:
    storage = stack.storage.model_copy(update={"queue_claim_idle_ms": claim_idle_ms})
    return dataclasses.replace(stack, storage=storage, **changes)


async def test_a_follow_up_read_by_another_worker_is_answered_where_its_state_is(
    stack: Stack, sessionmaker: Sessions, chatty_model_path: Path, redis_relay: tuple[TcpProxy, str],
    redis_client: Redis, queue_names: QueueNames,
) -> None:  # fmt: skip
    proxy, relayed = redis_relay
    stack = _on(stack, 60_000, model_path=chatty_model_path)  # no take-over while w-one is cut off
    queue = Queue(redis_client, names=queue_names, claim_idle_ms=60_000)
    routed = _routed_total()
    async with polling_bot(stack):
        await give_consent(stack.stub, ADA)
        async with inprocess_worker(stack, name="w-one", redis_url=relayed) as one:
            first = await _answered(stack, sessionmaker, 1, since=_push(stack, FIRST))
            async with inprocess_worker(stack, name="w-two") as two:
                before = await _route_follow_up_away(stack, proxy, queue, redis_client)
                proxy.restore()
                here = await _answered(stack, sessionmaker, 2, since=before)
    assert isinstance(one.batch, BatchEngine) and isinstance(two.batch, BatchEngine)
    assert (first.worker, here.worker, here.turn) == ("w-one", "w-one", 2)
    assert one.batch.pool_stats.hits >= 1 and one.batch.pool_stats.tokens_saved > first.completion_tokens
    assert two.answered == 0 and two.batch.pool_stats.hits == 0
    assert _routed_total() == routed + 1
    assert set(answers_per_message(stack.stub).values()) == {1}


async def test_a_follow_up_handed_to_a_worker_that_then_dies_is_answered_once_by_another(
    stack: Stack, sessionmaker: Sessions, redis_relay: tuple[TcpProxy, str], redis_client: Redis,
    queue_names: QueueNames,
) -> None:  # fmt: skip
    proxy, relayed = redis_relay
    stack = _on(stack, 3_000)
    queue = Queue(redis_client, names=queue_names, claim_idle_ms=3_000)
    async with polling_bot(stack):
        await give_consent(stack.stub, ADA)
        one = contextlib.AsyncExitStack()
        await one.enter_async_context(inprocess_worker(stack, name="w-one", redis_url=relayed))
        try:
            first = await _answered(stack, sessionmaker, 1, since=_push(stack, FIRST))
            async with inprocess_worker(stack, name="w-two") as two:
                before = await _route_follow_up_away(stack, proxy, queue, redis_client)
                await one.aclose()  # w-one is gone for good, its claim left behind: w-two takes it over
                here = await _answered(stack, sessionmaker, 2, since=before)
        finally:
            await one.aclose()
    assert (first.worker, here.worker, here.turn, here.status) == ("w-one", "w-two", 2, "ok")
    assert two.answered == 1
    assert set(answers_per_message(stack.stub).values()) == {1}
    assert await queue.dead_count() == 0


def _push(stack: Stack, text: str) -> int:
    before = len(stack.stub.calls)
    stack.stub.push_message(text, user_id=ADA)
    return before
