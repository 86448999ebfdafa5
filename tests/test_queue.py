"""The queue contract on real Redis: enqueue, read, finish, reclaim, dead-letter, cancel, trim, ask, alive."""

from __future__ import annotations

import asyncio
import time
import uuid

from redis.asyncio import Redis

from storage.queue import AnswerMessage, QuestionMessage, Queue, queue_from_settings
from storage.queue.streams import FAILED_TEXT
from storage.settings import StorageSettings


def _question(user: str = "u1", text: str = "What is ORS?") -> QuestionMessage:
    return QuestionMessage(
        question_id=uuid.uuid4().hex,
        chat_id=42,
        message_id=7,
        user=user,
        text=text,
        enqueued_at=time.time(),
    )


def _answer(q: QuestionMessage) -> AnswerMessage:
    return AnswerMessage(
        question_id=q.question_id,
        chat_id=q.chat_id,
        reply_to=q.message_id,
        user=q.user,
        text="Oral rehydration",
    )


async def test_enqueue_read_finish_roundtrip(queue: Queue) -> None:
    await queue.ensure_groups()
    first = await queue.enqueue(_question("a"))
    second = await queue.enqueue(_question("b"))
    assert (first.position, second.position) == (1, 2)
    taken = await queue.read_questions("w1", count=1, block_ms=100)
    assert [d.entry_id for d in taken] == [first.entry_id]
    assert taken[0].deliveries == 1
    await queue.finish(taken[0], _answer(taken[0].message))
    answers = await queue.read_answers("bot", block_ms=100)
    assert [a.message.question_id for a in answers] == [taken[0].message.question_id]
    await queue.ack_answer(answers[0].entry_id)
    assert await queue.waiting() == 1  # the finished question left the stream, the other waits
    assert await queue.read_answers("bot", pending=True) == []


async def test_stale_question_is_reclaimed_then_dead_lettered(queue: Queue, redis_client: Redis) -> None:
    await queue.ensure_groups()
    q = _question()
    await queue.enqueue(q)
    assert len(await queue.read_questions("dead-worker", block_ms=100)) == 1
    # Make the entry look idle for longer than the claim timeout, as after a crash.
    await redis_client.xclaim(
        queue.names.questions, queue.names.workers_group, "dead-worker", 0, [q_id := await _only_id(queue)],
        idle=queue.claim_idle_ms + 1, justid=True,
    )  # fmt: skip
    again = await queue.read_questions("w2", block_ms=100)
    assert [d.entry_id for d in again] == [q_id]
    assert again[0].deliveries == 2
    await redis_client.xclaim(
        queue.names.questions, queue.names.workers_group, "w2", 0, [q_id],
        idle=queue.claim_idle_ms + 1, justid=True,
    )  # fmt: skip
    assert await queue.read_questions("w3", block_ms=100) == []  # third delivery > max 2: dead
    notices = await queue.read_answers("bot", block_ms=100)
    assert [(n.message.status, n.message.text) for n in notices] == [("failed", FAILED_TEXT)]
    assert await redis_client.xlen(queue.names.dead) == 1
    assert await queue.waiting() == 0


async def _only_id(queue: Queue) -> str:
    entries = await queue.redis.xrange(queue.names.questions)
    assert len(entries) == 1
    return str(entries[0][0])


async def test_own_pending_first_after_restart(queue: Queue) -> None:
    await queue.ensure_groups()
    await queue.enqueue(_question())
    first = await queue.read_questions("local-worker", block_ms=100)
    again = await queue.read_questions("local-worker", block_ms=100)  # same name, as after restart
    assert [d.entry_id for d in again] == [first[0].entry_id]


async def test_cancel_removes_waiting_question_and_flags_it(queue: Queue) -> None:
    await queue.ensure_groups()
    q = _question("canceller")
    await queue.enqueue(q)
    assert await queue.pending_of("canceller") is not None
    assert await queue.cancel("canceller") == q.question_id
    assert await queue.is_cancelled(q.question_id)
    assert await queue.pending_of("canceller") is None
    assert await queue.read_questions("w", block_ms=100) == []
    assert await queue.cancel("canceller") is None


async def test_malformed_entry_is_dead_lettered_not_crashing(queue: Queue, redis_client: Redis) -> None:
    await queue.ensure_groups()
    await redis_client.xadd(queue.names.questions, {"m": '{"v": 1, "nonsense": true}'})
    assert await queue.read_questions("w", block_ms=100) == []
    assert await redis_client.xlen(queue.names.dead) == 1
    assert await queue.waiting() == 0


async def test_trim_drops_old_entries(queue: Queue, redis_client: Redis) -> None:
    await queue.ensure_groups()
    await redis_client.xadd(queue.names.dead, {"x": "1"}, id="1000-0")
    await redis_client.xadd(queue.names.dead, {"x": "2"})
    await queue.trim()
    assert await redis_client.xlen(queue.names.dead) == 1


async def test_sent_marker_guards_duplicates(queue: Queue) -> None:
    assert not await queue.was_sent("q1")
    await queue.mark_sent("q1")
    assert await queue.was_sent("q1")


async def test_ask_waits_for_its_answer_on_a_reply_stream_of_its_own(queue: Queue) -> None:
    await queue.ensure_groups()
    asking = asyncio.create_task(queue.ask(_question("asker"), timeout_s=60))
    taken = await queue.read_questions("w", block_ms=30_000)
    assert len(taken) == 1
    reply = taken[0].message.reply_stream
    assert reply is not None and reply.startswith(queue.names.answers + ":")
    await queue.finish(taken[0], _answer(taken[0].message))
    answer = await asking
    assert answer is not None and answer.question_id == taken[0].message.question_id
    assert answer.text == "Oral rehydration"
    assert await queue.answers_waiting() == 0  # not on the bot's stream
    assert not await queue.redis.exists(reply)  # the reply stream is gone once read


async def test_ask_gives_up_when_no_answer_comes(queue: Queue) -> None:
    await queue.ensure_groups()
    assert await queue.ask(_question("asker"), timeout_s=0.2) is None
    taken = await queue.read_questions("w", block_ms=100)  # the question itself was queued
    assert taken[0].message.reply_stream is not None
    assert not await queue.redis.exists(taken[0].message.reply_stream)


async def test_one_definition_of_a_live_worker(queue: Queue, redis_client: Redis) -> None:
    await queue.ensure_groups()
    assert await queue.live_workers() == 0  # no worker ever read
    await queue.read_questions("w-alive", block_ms=10)
    assert [(w.name, w.alive) for w in await queue.workers()] == [("w-alive", True)]
    assert await queue.live_workers() == 1
    strict = Queue(redis_client, names=queue.names, worker_alive_s=0)  # any silence is too long
    assert [w.alive for w in await strict.workers()] == [False]
    assert await strict.live_workers() == 0
    configured = queue_from_settings(redis_client, StorageSettings(worker_down_s=7))
    assert configured.worker_alive_s == 7  # WORKER_DOWN_S is the one setting
