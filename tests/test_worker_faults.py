"""Faults injected into real worker processes: Redis killed (-9) mid-answer, the worker killed (-9)
mid-answer, generation failing, two workers on a short claim time. Every question is answered exactly
once (counted on the answer stream and in the workers' ``answer.published`` lines), nothing is lost,
the worker answers afterwards, and no question text reaches a log.

The tiny model makes ~1,000 tokens/s alone, so answers are a few hundred tokens long and several
questions share a batch: a fault lands while answers are being generated.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from bot.process.private_redis import PrivateRedis
from inference.batch import BatchEngine
from inference.prompt import build_prompt, preamble_prompt
from inference.worker import Worker, WorkerConfig
from storage.queue import QuestionMessage, Queue, QueueNames
from storage.queue.connection import connect
from storage.queue.streams import FAILED_TEXT
from tests.support.stack import LoggedProcess

Start = Callable[..., Any]


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    """A redis-server of this test's own (append-only file on), which the test may kill."""
    directory = Path(tempfile.mkdtemp(prefix="wf", dir="/tmp"))  # unix socket paths must be short
    server = PrivateRedis(directory)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def names() -> QueueNames:
    """Queue names of this test."""
    return QueueNames(namespace=f"wf-{uuid.uuid4().hex[:10]}")


@pytest.fixture
async def client(private_redis: PrivateRedis) -> AsyncIterator[Redis]:
    """A client of the private server (it reconnects by itself after a restart)."""
    redis = await connect(private_redis.url)
    yield redis
    await redis.aclose()


@pytest.fixture
def queue(client: Redis, names: QueueNames) -> Queue:
    """The bot's view of the queue (enqueue) on the private server."""
    return Queue(client, names=names, claim_idle_ms=1_000, max_deliveries=3)


@pytest.fixture
async def start_worker(
    private_redis: PrivateRedis, names: QueueNames, tiny_model_path: Path, tmp_path: Path
) -> AsyncIterator[Start]:
    """Factory of ``python -m bot.cli worker`` processes on the private server; all killed afterwards."""
    started: list[LoggedProcess] = []

    async def start(*, ready: bool = True, **extra: str) -> LoggedProcess:
        env = {
            **os.environ,
            "REDIS_URL": private_redis.url,
            "DATA_DIR": str(tmp_path / "data"),
            "MODEL_PATH": str(tiny_model_path),
            "QUEUE_NAMESPACE": names.namespace,
            "QUEUE_CLAIM_IDLE_MS": "1000",
            "QUEUE_MAX_DELIVERIES": "3",
            "N_CTX": "4096",
            "N_THREADS": "1",
            "MAX_SEQUENCES": "2",
            "MAX_ANSWER_TOKENS": "400",
            "MEMORY_GUARD": "false",
            **extra,
        }
        process = await LoggedProcess.start(sys.executable, "-m", "bot.cli", "worker", env=env)
        started.append(process)
        if ready:
            await process.wait_for_line("worker.ready")
        return process

    yield start
    for process in started:
        await process.stop(signal.SIGKILL)


def _question(number: int) -> QuestionMessage:
    return QuestionMessage(
        question_id=uuid.uuid4().hex,
        chat_id=987_654_321_000 + number,
        message_id=number,
        user=f"user{number:012d}",
        text=f"Secret clinical question {uuid.uuid4().hex[:8]}: fever and cough in a child, what next?",
        received_at=time.time(),
        enqueued_at=time.time(),
    )


async def _enqueue(queue: Queue, count: int) -> list[QuestionMessage]:
    questions = [_question(i) for i in range(count)]
    for question in questions:
        await queue.enqueue(question)
    return questions


async def _answers(client: Redis, names: QueueNames) -> list[dict[str, Any]]:
    """Every answer on the answer stream (nobody consumes them in these tests)."""
    return [json.loads(fields["m"]) for _, fields in await client.xrange(names.answers)]


async def _wait_answers(client: Redis, names: QueueNames, count: int, timeout: float = 90.0) -> None:
    """Wait (XREAD BLOCK on the answer stream) until it holds ``count`` answers."""
    last = "0-0"
    seen = 0
    async with asyncio.timeout(timeout):
        while seen < count:
            response = await client.xread({names.answers: last}, block=1_000, count=100)
            for _, entries in response or []:
                seen += len(entries)
                last = entries[-1][0]


async def _wait_lines(process: LoggedProcess, needle: str, count: int) -> None:
    """Wait until ``count`` lines of the process contain ``needle``."""
    since = 0
    for _ in range(count):
        line = await process.wait_for_line(needle, since=since)
        since = process.lines.index(line, since) + 1


def _events(process: LoggedProcess, event: str) -> list[dict[str, Any]]:
    """The process's JSON log lines of one event."""
    found = []
    for line in process.lines:
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if isinstance(record, dict) and record.get("event") == event:
                found.append(record)
    return found


def _assert_exactly_once(answers: list[dict[str, Any]], questions: list[QuestionMessage]) -> Counter[str]:
    counts = Counter(answer["question_id"] for answer in answers)
    asked = {q.question_id for q in questions}
    assert set(counts) >= asked, f"lost: {len(asked - set(counts))}"
    duplicates = {qid: n for qid, n in counts.items() if n > 1}
    assert not duplicates, f"duplicated: {duplicates}"
    return counts


def _assert_no_content(process: LoggedProcess, questions: list[QuestionMessage]) -> None:
    output = process.output
    assert "Traceback" not in output
    for question in questions:
        assert question.text not in output
        assert question.user not in output
        assert str(question.chat_id) not in output


async def _kill_redis(server: PrivateRedis, client: Redis) -> None:
    """kill -9 the redis-server (found by its own INFO) and reap it."""
    pid = int((await client.info("server"))["process_id"])
    os.kill(pid, signal.SIGKILL)
    server.stop()  # reaps the killed process; nothing is sent to it


async def test_redis_killed_mid_answer_every_question_answered_once(
    private_redis: PrivateRedis, client: Redis, queue: Queue, names: QueueNames, start_worker: Start
) -> None:
    worker = await start_worker(WORKER_NAME="w-outage")
    questions = await _enqueue(queue, 10)
    await worker.wait_for_line('"answer.published"')
    mark = len(worker.lines)
    await worker.wait_for_line('"question.taken"', since=mark)  # answers are being generated now
    published_before = len(await _answers(client, names))
    await _kill_redis(private_redis, client)
    killed_at = time.monotonic()
    await worker.wait_for_line('"redis.unavailable"')
    await worker.wait_for_line('"answer.held"')  # an answer finished while Redis is away: kept in memory
    # Keep Redis away longer than the claim time (1 s): this is the fault's length, not a wait on a result.
    await asyncio.sleep(max(0.0, 2.5 - (time.monotonic() - killed_at)))
    restart_at = time.monotonic()
    private_redis.start()  # same directory: the append-only file brings the streams back
    back_at = time.monotonic()
    await _wait_answers(client, names, len(questions))
    all_answered_s = time.monotonic() - back_at
    recovered = _events(worker, "redis.recovered")
    late = _question(99)  # the worker still answers afterwards
    await queue.enqueue(late)
    await _wait_answers(client, names, len(questions) + 1)
    assert worker.process.returncode is None  # still running: then stopped, so all its lines are read
    assert await worker.stop(signal.SIGTERM) == 0

    answers = await _answers(client, names)
    counts = _assert_exactly_once(answers, [*questions, late])
    assert all(answer["status"] == "ok" for answer in answers)
    assert await client.xlen(names.dead) == 0
    published = Counter(record["question_id"] for record in _events(worker, "answer.published"))
    assert published == counts  # generated and published once each, none regenerated
    assert len(_events(worker, "redis.unavailable")) == 1  # one line per outage
    _assert_no_content(worker, [*questions, late])
    print(
        f"\nredis kill -9: questions={len(questions)} answered_before_kill={published_before} "
        f"held_in_memory={len(_events(worker, 'answer.held'))} duplicates=0 lost=0 "
        f"outage_s={back_at - killed_at:.2f} redis_restart_s={back_at - restart_at:.2f} "
        f"worker_down_s={recovered[0]['down_s'] if recovered else '?'} "
        f"all_answered_after_restart_s={all_answered_s:.2f}"
    )


async def test_a_worker_stopped_while_redis_is_away_loses_nothing(
    private_redis: PrivateRedis, client: Redis, queue: Queue, names: QueueNames, start_worker: Start
) -> None:
    worker = await start_worker(WORKER_NAME="w-stop")
    questions = await _enqueue(queue, 6)
    await _wait_lines(worker, '"question.taken"', 2)
    await _kill_redis(private_redis, client)
    await worker.wait_for_line('"redis.unavailable"')
    assert await worker.stop(signal.SIGTERM, timeout=30) == 0  # stops although Redis is away
    private_redis.start()
    again = await start_worker(WORKER_NAME="w-stop")
    await _wait_answers(client, names, len(questions))
    _assert_exactly_once(await _answers(client, names), questions)
    assert await client.xlen(names.dead) == 0
    for process in (worker, again):
        _assert_no_content(process, questions)


@pytest.mark.parametrize("same_name", [True, False], ids=["same-name", "new-name"])
async def test_worker_killed_mid_answer_answers_once_after_restart(
    client: Redis, queue: Queue, names: QueueNames, start_worker: Start, same_name: bool
) -> None:
    first = await start_worker(WORKER_NAME="w-crash")
    questions = await _enqueue(queue, 5)
    await _wait_lines(first, '"question.taken"', 2)  # two answers being generated
    await first.stop(signal.SIGKILL)
    before = len(_events(first, "answer.published"))
    assert before < len(questions)
    second = await start_worker(WORKER_NAME="w-crash" if same_name else "w-crash-2")
    await _wait_answers(client, names, len(questions))
    answers = await _answers(client, names)
    counts = _assert_exactly_once(answers, questions)
    logged = [*_events(first, "answer.published"), *_events(second, "answer.published")]
    published = Counter(record["question_id"] for record in logged)
    assert set(published) <= set(counts) and max(published.values()) == 1  # (a line can die with -9)
    retaken = [r for r in _events(second, "question.taken") if r["deliveries"] == 2]
    assert retaken  # the killed worker's questions were delivered again, once
    assert await client.xlen(names.dead) == 0
    _assert_no_content(second, questions)
    print(f"\nworker kill -9 ({'same' if same_name else 'new'} name): questions={len(questions)} "
          f"answered_before_kill={before} redelivered={len(retaken)} duplicates=0 lost=0")  # fmt: skip


async def test_a_restarted_worker_with_fewer_slots_resumes_every_question_it_held(
    client: Redis, queue: Queue, names: QueueNames, start_worker: Start
) -> None:
    """kill -9 of a worker answering two questions; it comes back under its name with one slot and a
    claim time far longer than the test: it resumes both (one after the other), not one now and the
    other when the claim runs out."""
    slow_claim = {"QUEUE_CLAIM_IDLE_MS": "600000"}
    first = await start_worker(WORKER_NAME="w-held", MAX_SEQUENCES="2", **slow_claim)
    questions = await _enqueue(queue, 4)
    await _wait_lines(first, '"question.taken"', 2)
    await first.stop(signal.SIGKILL)
    held = {r["question_id"] for r in _events(first, "question.taken")}
    published_before = {r["question_id"] for r in _events(first, "answer.published")}
    assert held - published_before, "the kill must land while a question is held"
    second = await start_worker(WORKER_NAME="w-held", MAX_SEQUENCES="1", **slow_claim)
    await _wait_answers(client, names, len(questions))
    _assert_exactly_once(await _answers(client, names), questions)
    retaken = {r["question_id"] for r in _events(second, "question.taken") if r["deliveries"] == 2}
    assert held - published_before <= retaken
    assert await client.xlen(names.dead) == 0


async def test_a_question_that_kills_its_worker_each_time_is_dead_lettered_and_its_user_told(
    client: Redis, queue: Queue, names: QueueNames, start_worker: Start
) -> None:
    [question] = await _enqueue(queue, 1)
    for attempt in (1, 2):
        worker = await start_worker(
            WORKER_NAME="w-poison", QUEUE_MAX_DELIVERIES="2", MAX_ANSWER_TOKENS="1500"
        )
        taken = await worker.wait_for_line('"question.taken"')
        assert f'"deliveries": {attempt}' in taken
        await worker.stop(signal.SIGKILL)
    survivor = await start_worker(WORKER_NAME="w-poison", QUEUE_MAX_DELIVERIES="2")
    await _wait_answers(client, names, 1)
    [notice] = await _answers(client, names)
    assert (notice["question_id"], notice["status"], notice["text"]) == (
        question.question_id,
        "failed",
        FAILED_TEXT,
    )
    dead = await client.xrange(names.dead)
    assert [fields["question_id"] for _, fields in dead] == [question.question_id]
    after = await _enqueue(queue, 1)
    await _wait_answers(client, names, 2)
    assert [a["status"] for a in await _answers(client, names)] == ["failed", "ok"]
    _assert_no_content(survivor, [question, *after])


def _fill_behind_the_engine(engine: BatchEngine, seq_id: int, count: int) -> None:
    """Fault injection: ``count`` KV cells taken by sequence ``seq_id`` without the engine knowing."""
    import llama_cpp

    filler = engine.tokenize("fever " * 4000)[:count]
    batch = llama_cpp.llama_batch_init(engine.n_batch, 0, 1)
    try:
        for start in range(0, len(filler), engine.n_batch):
            chunk = filler[start : start + engine.n_batch]
            for i, token in enumerate(chunk):
                batch.token[i], batch.pos[i], batch.n_seq_id[i], batch.logits[i] = token, start + i, 1, False
                batch.seq_id[i][0] = seq_id
            batch.n_tokens = len(chunk)
            assert llama_cpp.llama_decode(engine.context, batch) == 0
    finally:
        llama_cpp.llama_batch_free(batch)


async def test_failing_generation_is_retried_then_dead_lettered_and_the_worker_goes_on(
    client: Redis, queue: Queue, names: QueueNames, tiny_model_path: Path
) -> None:
    # The real engine on a KV cache mostly taken behind its back: a long question's generation fails
    # (llama.cpp finds no room, ContextFullError) each time; a short one still fits.
    with BatchEngine(tiny_model_path, n_ctx=1024, n_threads=1, max_sequences=2, n_batch=64) as engine:
        engine.set_prefix(preamble_prompt())
        failing = _question(1).model_copy(
            update={"text": "fever, cough and fast breathing in a child. " * 14}
        )
        tail = len(engine.tokenize(build_prompt(failing.text))) - engine.prefix_tokens
        _fill_behind_the_engine(engine, 2, engine.n_ctx - engine.prefix_tokens - tail // 2)
        worker = Worker(queue, engine, WorkerConfig("w-fail", None, max_answer_tokens=8, heartbeat_s=0.25))
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        try:
            await queue.enqueue(failing)
            await _wait_answers(client, names, 1)
            fine = _question(2).model_copy(update={"text": "Fever?"})
            await queue.enqueue(fine)  # the same worker answers on
            await _wait_answers(client, names, 2)
        finally:
            stop.set()
            await task
    answers = {a["question_id"]: a for a in await _answers(client, names)}
    _assert_exactly_once(list(answers.values()), [failing, fine])
    assert (answers[failing.question_id]["status"], answers[failing.question_id]["text"]) == (
        "failed",
        FAILED_TEXT,
    )
    assert answers[fine.question_id]["status"] == "ok"
    dead = await client.xrange(names.dead)
    assert [fields["question_id"] for _, fields in dead] == [failing.question_id]
    assert [fields["reason"] for _, fields in dead] == ["delivered 4 times"]  # 3 tries, then given up
    assert engine.stats.failures == 3
    assert worker.answered == 1


async def test_two_workers_on_a_one_second_claim_generate_each_question_once(
    client: Redis, queue: Queue, names: QueueNames, start_worker: Start, slower_model_path: Path
) -> None:
    options = {"MAX_SEQUENCES": "4", "MAX_ANSWER_TOKENS": "400", "MODEL_PATH": str(slower_model_path)}
    workers = [await start_worker(WORKER_NAME=f"w-pair-{i}", **options) for i in (1, 2)]
    assert await queue.capacity() == 8  # both announce their slots
    questions = await _enqueue(queue, 16)
    started = time.monotonic()
    await _wait_answers(client, names, len(questions), timeout=300)
    elapsed = time.monotonic() - started
    for worker in workers:  # stopped, so that every line they wrote has been read
        assert await worker.stop(signal.SIGTERM) == 0
    answers = await _answers(client, names)
    counts = _assert_exactly_once(answers, questions)
    per_worker = [Counter(r["question_id"] for r in _events(w, "answer.published")) for w in workers]
    assert per_worker[0] + per_worker[1] == counts  # each generated and published exactly once
    assert all(per_worker)  # both shared the work
    seconds = [r["seconds"] for w in workers for r in _events(w, "answer.published")]
    assert max(seconds) > 1.0  # answers outlived the claim time: only the heartbeat kept them
    assert await client.xlen(names.dead) == 0
    heartbeat = _events(workers[0], "worker.heartbeat")[0]
    assert heartbeat["heartbeat_s"] == 0.25
    lost = sum(len(_events(w, "question.claim_lost")) for w in workers)
    for worker in workers:
        _assert_no_content(worker, questions)
    assert await queue.capacity() == 0  # a stopped worker withdraws its slots
    print(
        f"\ntwo workers, claim 1 s: questions={len(questions)} duplicates=0 dead=0 claims_lost={lost} "
        f"per_worker={[len(c) for c in per_worker]} longest_answer_s={max(seconds):.2f} "
        f"elapsed_s={elapsed:.1f}"
    )


async def test_a_heartbeat_slower_than_the_claim_time_is_refused_at_start(start_worker: Start) -> None:
    worker = await start_worker(ready=False, HEARTBEAT_S="10", QUEUE_CLAIM_IDLE_MS="1000")
    async with asyncio.timeout(60):
        assert await worker.process.wait() == 2
    await worker.stop()
    errors = [line for line in worker.lines if "error" in line.lower()]
    assert len(errors) == 1
    assert "HEARTBEAT_S=10 is too slow for QUEUE_CLAIM_IDLE_MS=1000" in errors[0]
    assert "Traceback" not in worker.output
