"""The batched worker on a real Redis queue and the tiny model: several questions at once."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from inference.batch import BatchEngine
from inference.errors import HeartbeatConfigError
from inference.prompt import build_prompt, preamble_prompt
from inference.settings import InferenceSettings
from inference.worker import TOO_LONG_TEXT, Worker, WorkerConfig
from storage.queue import AnswerMessage, QuestionMessage, Queue

QUESTIONS = [
    "What dose of paracetamol for a child of 12 kg with fever?",
    "Signs of severe dehydration in a baby?",
    "How do I clean a deep dirty wound from a machete?",
    "Malaria rapid test is negative but the fever goes on: what next?",
]


@pytest.fixture
def batch(tiny_model_path: Path) -> Iterator[BatchEngine]:
    """A batched engine of three sequences on the tiny model."""
    with BatchEngine(tiny_model_path, n_ctx=2048, n_threads=1, max_sequences=3) as engine:
        yield engine


@pytest.fixture
async def running(queue: Queue, batch: BatchEngine) -> AsyncIterator[Worker]:
    """A worker task answering from the test queue, stopped afterwards."""
    await queue.ensure_groups()  # as the bot does: the test reads answers before the worker has started
    worker = Worker(queue, batch, WorkerConfig("w-test", "0" * 64, max_answer_tokens=40))
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        yield worker
    finally:
        stop.set()
        await task


def _question(text: str, number: int) -> QuestionMessage:
    return QuestionMessage(
        question_id=uuid.uuid4().hex,
        chat_id=7,
        message_id=number,
        user="u" * 16,
        text=text,
        received_at=time.time() - 0.5,
        enqueued_at=time.time(),
    )


async def _answers(queue: Queue, count: int, timeout: float = 60.0) -> dict[str, AnswerMessage]:
    """Wait for ``count`` answers on the answer stream."""
    found: dict[str, AnswerMessage] = {}
    async with asyncio.timeout(timeout):
        while len(found) < count:
            for delivery in await queue.read_answers("test-bot", count=10, block_ms=500):
                found[delivery.message.question_id] = delivery.message
    return found


async def test_questions_arriving_together_are_answered_together_and_each_acked(
    queue: Queue, batch: BatchEngine, running: Worker
) -> None:
    questions = [_question(text, i) for i, text in enumerate(QUESTIONS)]
    for question in questions:
        await queue.enqueue(question)
    answers = await _answers(queue, len(questions))
    assert set(answers) == {q.question_id for q in questions}
    assert all(a.status == "ok" and a.completion_tokens == 40 for a in answers.values())
    by_id = {q.question_id: q for q in questions}  # the timeline travels with the answer
    assert all(
        (a.received_at, a.enqueued_at) == (by_id[i].received_at, by_id[i].enqueued_at)
        for i, a in answers.items()
    )
    # three sequences: the first three were all taken before any of them finished
    ordered = sorted(answers.values(), key=lambda a: a.taken_at)
    assert max(a.taken_at for a in ordered[:3]) < min(a.finished_at for a in ordered[:3])
    # no more than three at once: the fourth was taken only when a sequence came free
    assert ordered[3].taken_at >= min(a.finished_at for a in ordered[:3])
    assert await queue.waiting() == 0  # every question acked and deleted
    assert batch.prefix_tokens > 200  # the instruction prefix was evaluated once, up front
    # the batched answers are the greedy answers of each question alone
    for question in questions[:2]:
        alone = batch.generate(build_prompt(question.text), max_tokens=40)
        assert answers[question.question_id].text == alone.text


async def test_a_question_longer_than_the_context_is_refused_and_the_worker_goes_on(
    queue: Queue, running: Worker
) -> None:
    long = _question("fever and cough " * 1500, 1)
    short = _question(QUESTIONS[0], 2)
    await queue.enqueue(long)
    await queue.enqueue(short)
    answers = await _answers(queue, 2)
    assert answers[long.question_id].status == "failed"
    assert answers[long.question_id].text == TOO_LONG_TEXT
    assert answers[short.question_id].status == "ok"
    assert await queue.waiting() == 0


async def test_a_plain_engine_is_accepted_and_shares_its_weights(queue: Queue, tiny_model_path: Path) -> None:
    from inference.engine import Engine

    await queue.ensure_groups()
    question = _question(QUESTIONS[1], 1)
    with Engine(tiny_model_path, n_ctx=2048, n_threads=1) as engine:
        worker = Worker(queue, engine, WorkerConfig("w-plain", None, max_answer_tokens=8, max_sequences=2))
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        try:
            await queue.enqueue(question)
            answers = await _answers(queue, 1)
        finally:  # the worker (and its batched context) ends before the engine closes, even on failure
            stop.set()
            await task
        reference = engine.generate(build_prompt(QUESTIONS[1]), max_tokens=8, fresh=True)
    assert answers[question.question_id].text == reference.text
    assert preamble_prompt() in build_prompt(QUESTIONS[1])


async def test_a_running_worker_announces_its_slots_for_a_limited_time(queue: Queue, running: Worker) -> None:
    await queue.enqueue(_question(QUESTIONS[0], 1))
    await _answers(queue, 1)  # the worker reads only once it has announced its slots
    assert await queue.capacity() == 3  # the batch's sequences
    ttl_ms = await queue.redis.pttl(queue.names.capacity_key("w-test"))
    assert 0 < ttl_ms <= running.config.capacity_ttl_s * 1000  # a killed worker's slots expire


def test_the_heartbeat_follows_the_claim_time_or_is_refused() -> None:
    derived = InferenceSettings(heartbeat_s=None)
    assert derived.heartbeat_interval(1_000) == 0.25
    assert derived.heartbeat_interval(20_000) == 5.0
    assert derived.heartbeat_interval(120_000) == 10.0  # never slower than the old fixed 10 s
    assert InferenceSettings(heartbeat_s=0.3).heartbeat_interval(1_000) == 0.3
    with pytest.raises(HeartbeatConfigError, match="HEARTBEAT_S=10 is too slow for QUEUE_CLAIM_IDLE_MS=1000"):
        InferenceSettings(heartbeat_s=10).heartbeat_interval(1_000)
