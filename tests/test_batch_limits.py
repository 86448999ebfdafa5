"""A question as long as the bot accepts, through the real worker, queue and batched engine."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from bot.settings import BotSettings
from inference.batch import BatchEngine
from inference.prompt import build_prompt
from inference.worker import Worker, WorkerConfig
from storage.queue import AnswerMessage, QuestionMessage, Queue

MAX_QUESTION_CHARS = BotSettings.model_fields["max_question_chars"].default
ARABIC = "يعاني الطفل من حمى وسعال وتنفس سريع منذ ثلاثة أيام ويرفض الشرب، ماذا أفعل؟ "
N_BATCH = 512  # the worker's batch size


@pytest.fixture
def batch(tiny_model_path: Path) -> Iterator[BatchEngine]:
    """The worker's batched engine at the default context size and batch size."""
    with BatchEngine(tiny_model_path, n_ctx=4096, n_threads=1, max_sequences=2, n_batch=N_BATCH) as engine:
        yield engine


@pytest.fixture
async def running(queue: Queue, batch: BatchEngine) -> AsyncIterator[Worker]:
    """A worker task answering from the test queue, stopped afterwards."""
    # the test queue reclaims a question idle for 1 s: the heartbeat must come sooner
    config = WorkerConfig("w-limits", "0" * 64, max_answer_tokens=40, heartbeat_s=0.2, cancel_poll_s=0.1)
    worker = Worker(queue, batch, config)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        yield worker
    finally:
        stop.set()
        await task


def _question(text: str, number: int, language: str = "en") -> QuestionMessage:
    return QuestionMessage(
        question_id=uuid.uuid4().hex,
        chat_id=7,
        message_id=number,
        user="u" * 16,
        text=text,
        language=language,
        received_at=time.time() - 0.5,
        enqueued_at=time.time(),
    )


async def _answers(queue: Queue, seen: list[str], *questions: QuestionMessage) -> dict[str, AnswerMessage]:
    """Wait for the answers of ``questions`` on the answer stream; every answer's id goes to ``seen``."""
    found: dict[str, AnswerMessage] = {}
    async with asyncio.timeout(90):
        while not {q.question_id for q in questions} <= found.keys():
            for delivery in await queue.read_answers("test-bot", count=10, block_ms=500):
                found[delivery.message.question_id] = delivery.message
                seen.append(delivery.message.question_id)
    return found


async def test_an_arabic_question_at_the_length_limit_is_answered_and_the_worker_goes_on(
    queue: Queue, batch: BatchEngine, running: Worker
) -> None:
    text = (ARABIC * 40)[:MAX_QUESTION_CHARS]
    long = _question(text, 1, "ar")
    short = _question("Signs of severe dehydration in a baby?", 2)
    await queue.enqueue(long)
    await queue.enqueue(short)
    seen: list[str] = []
    answers = await _answers(queue, seen, long, short)
    assert answers[long.question_id].status == "ok"
    assert answers[long.question_id].completion_tokens == 40
    tail = answers[long.question_id].prompt_tokens - batch.prefix_tokens
    assert tail > 4 * N_BATCH  # the tail took several batches
    assert answers[short.question_id].status == "ok"
    after = _question("Combien de SRO pour un enfant avec diarrhée ?", 3, "fr")
    await queue.enqueue(after)
    assert (await _answers(queue, seen, after))[after.question_id].status == "ok"  # and it still answers
    assert sorted(seen) == sorted(q.question_id for q in (long, short, after))  # each answered once
    assert batch.stats.failures == 0
    assert answers[long.question_id].text == batch.generate(build_prompt(text, "ar"), max_tokens=40).text
    print(f"\nArabic question: {len(text)} chars, tail {tail} tokens over {-(-tail // N_BATCH)} batches")
