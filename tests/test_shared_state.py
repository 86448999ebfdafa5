"""State two bot processes share, on a real Redis: each test plays both processes with two clients.

Typing chats and answer times, the one pending question per user, the leases of periodic jobs,
what the monitor reported, the expiry of held group questions, and taking over a gone process's
unacked updates.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from bot.flows.alerts import MonitorState
from bot.jobs.lease import Leases, run_leased
from bot.liveness import Liveness
from bot.progress import SERVICE_TIMES_KEPT, AnswerProgress
from bot.resources import consumer_name
from storage.queue import QuestionMessage, Queue, QueueNames
from storage.queue.connection import connect
from storage.queue.updates import GROUP as UPDATES_GROUP
from storage.queue.updates import UpdateLog
from storage.transient.held import HeldQuestions


@pytest.fixture
async def other_client(redis_url: str) -> AsyncIterator[Redis]:
    """A second connection: the other bot process (the test's keys are deleted by ``redis_client``)."""
    client = await connect(redis_url)
    yield client
    await client.aclose()


def _question(user: str, question_id: str | None = None) -> QuestionMessage:
    return QuestionMessage(
        question_id=question_id or uuid.uuid4().hex,
        chat_id=-100777,
        message_id=7,
        user=user,
        text="dose of zinc?",
        language="fr",
        enqueued_at=time.time(),
    )


def test_consumer_names_differ_per_process_start() -> None:
    first, second = consumer_name("bot"), consumer_name("bot")
    assert first != second and first.startswith("bot-") and second.startswith("bot-")


async def test_typing_chats_are_shared_oldest_first_and_expire(
    redis_client: Redis, other_client: Redis, queue_names: QueueNames
) -> None:
    ns = queue_names.namespace
    one, other = AnswerProgress(redis_client, ns, 600.0), AnswerProgress(other_client, ns, 600.0)
    now = time.time()
    await one.start_typing(-1001, now=now - 700)  # past TYPING_MAX_S
    await one.start_typing(42, now=now - 5)
    await other.start_typing(43, now=now - 1)
    assert await other.typing_chats(limit=8, now=now) == [42, 43]
    assert await one.typing_chats(limit=1, now=now) == [42]
    await other.stop_typing(42)  # delivered by the other process
    assert await one.typing_chats(limit=8, now=now) == [43]
    assert 0 < await redis_client.ttl(one.typing_key) <= 660
    keys = [key.removeprefix(f"{ns}:") async for key in redis_client.scan_iter(match=f"{ns}:*")]
    assert keys and not [key for key in keys if "42" in key or "43" in key]  # chat ids are values only


async def test_answer_times_of_one_process_give_the_others_estimate(
    redis_client: Redis, other_client: Redis, queue_names: QueueNames
) -> None:
    ns = queue_names.namespace
    one, other = AnswerProgress(redis_client, ns, 600.0), AnswerProgress(other_client, ns, 600.0)
    assert await other.estimated_wait_s(3) is None
    await one.record_service_time(30.0)
    await one.record_service_time(90.0)
    assert await other.estimated_wait_s(3) == 3 * 60.0
    assert await other.estimated_wait_s(8, slots=8) == 60.0
    for _ in range(SERVICE_TIMES_KEPT):
        await one.record_service_time(10.0)
    assert await other.estimated_wait_s(1) == 10.0  # only the recent ones count
    assert await redis_client.ttl(one.times_key) > 0


async def test_one_pending_question_per_user_even_when_two_processes_race(
    redis_client: Redis, other_client: Redis, queue_names: QueueNames
) -> None:
    one, other = Queue(redis_client, names=queue_names), Queue(other_client, names=queue_names)
    racing = enumerate([one, other] * 5)
    claims = await asyncio.gather(*(q.claim_pending("u1", f"question{i}") for i, q in racing))
    assert sorted(claims) == ["new"] + ["other"] * 9
    winner = f"question{claims.index('new')}"
    assert await other.claim_pending("u1", winner) == "again"  # the same update handled again
    await one.enqueue_once(_question("u1", winner))
    assert await other.claim_pending("u1", winner) == "again"
    assert (await other.pending_of("u1") or ("", ""))[1]  # the entry id is there now
    await one.clear_pending("u1", winner)
    assert await other.claim_pending("u1", "question-next") == "new"


async def test_a_question_withdrawn_between_claim_and_enqueue_is_not_enqueued(
    redis_client: Redis, queue_names: QueueNames
) -> None:
    queue = Queue(redis_client, names=queue_names)
    await queue.ensure_groups()
    question = _question("u2")
    assert await queue.claim_pending("u2", question.question_id) == "new"
    assert await queue.cancel("u2") == question.question_id  # no entry yet: nothing to delete
    assert await queue.enqueue_once(question) is None
    assert await queue.waiting() == 0 and await queue.pending_of("u2") is None


async def test_a_lease_lets_one_process_run_a_round(
    redis_client: Redis, other_client: Redis, queue_names: QueueNames
) -> None:
    ns = queue_names.namespace
    one, other = Leases(redis_client, ns, "a"), Leases(other_client, ns, "b")
    ran: list[str] = []

    async def job(name: str) -> None:
        ran.append(name)

    results = await asyncio.gather(
        run_leased(one, "retention", 86_400, lambda: job("a")),
        run_leased(other, "retention", 86_400, lambda: job("b")),
    )
    assert sorted(results) == [False, True] and len(ran) == 1
    assert await redis_client.get(one.key("retention")) == ran[0]
    assert 0 < await redis_client.pttl(one.key("retention")) <= 86_400 * 900
    assert await run_leased(None, "retention", 86_400, lambda: job("alone"))  # no leases: always
    assert await one.take("monitor", 60) and not await other.take("monitor", 60)  # one lease per job


async def test_each_monitor_change_is_reported_by_one_process(
    redis_client: Redis, other_client: Redis, queue_names: QueueNames
) -> None:
    ns = queue_names.namespace
    one, other = MonitorState(redis_client, ns), MonitorState(other_client, ns)
    assert await one.started("workers_down", False) is None  # nothing to report at first
    both = await asyncio.gather(one.started("workers_down", True), other.started("workers_down", True))
    assert sorted(both, key=str) == [None, True]
    assert await other.started("workers_down", True) is None  # still down: said already
    assert await one.started("workers_down", False) is False  # back
    assert await one.swap("dead", "3") is None
    assert await other.swap("dead", "5") == "3"


async def test_a_held_question_expires_once_for_all_processes(
    redis_client: Redis, other_client: Redis, queue_names: QueueNames
) -> None:
    ns = queue_names.namespace
    one, other = HeldQuestions(redis_client, ns), HeldQuestions(other_client, ns)
    now = time.time()
    await one.hold(_question("ada", "question-ada"), ttl_s=60, now=now - 61)  # due a second ago
    await one.hold(_question("ben", "question-ben"), ttl_s=60, now=now)
    await one.hold(_question("chi", "question-chi-old"), ttl_s=60, now=now - 61)
    await one.hold(_question("chi", "question-chi-new"), ttl_s=60, now=now)  # replaces the older one
    taken = await asyncio.gather(one.expire_held(now=now), other.expire_held(now=now))
    assert sorted(q.question_id for q in taken[0] + taken[1]) == ["question-ada"]
    assert [q.language for q in taken[0] + taken[1]] == ["fr"]
    assert await one.expire_held(now=now + 61) != []  # ben's and chi's newer question, once
    assert await other.expire_held(now=now + 61) == []
    assert await other.take_held("ben") is None and await other.take_held("chi") is None


async def test_a_live_process_takes_over_the_entries_of_a_gone_one(
    redis_client: Redis, other_client: Redis, queue_names: QueueNames
) -> None:
    ns = queue_names.namespace
    log = UpdateLog(redis_client, ns)
    await log.ensure_group()
    await log.store([{"update_id": n, "message": {"text": "hi"}} for n in (1, 2, 3)])
    assert len(await log.read("gone", pending=False, count=2, block_ms=10)) == 2  # then it died
    assert len(await log.read("paused", pending=False, count=1, block_ms=10)) == 1  # alive, slow
    told: list[str] = []
    live = Liveness(other_client, ns, "live", [(log.stream, UPDATES_GROUP)], [lambda: told.append("x")])
    paused = Liveness(redis_client, ns, "paused", [])
    await paused.beat()
    assert await live.beat() == 2 and told == ["x"]
    consumers = {
        c["name"]: c["pending"] for c in await redis_client.xinfo_consumers(log.stream, UPDATES_GROUP)
    }
    assert consumers == {"live": 2, "paused": 1}  # the gone consumer is deleted
    assert [s.update_id for s in await log.read("live", pending=True)] == [1, 2]
    assert await live.beat() == 0 and told == ["x"]
    await paused.stop()  # a clean stop: what it left is taken at the next beat
    assert await live.beat() == 1
