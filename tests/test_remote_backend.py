"""A worker answering through a real llama-server (INFERENCE_URL): end to end, cancellation, refusals."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog
import structlog.testing
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.telegram import texts
from inference.batch import Request
from inference.engine import Engine
from inference.errors import PromptTooLongError
from inference.prompt import build_prompt
from inference.remote import RemoteEngine
from storage.models import Answer, Question
from tests.support.consent import give_consent
from tests.support.http_faults import Fault, FaultyRelay
from tests.support.llama_server import MODEL_ALIAS, free_port, running_llama_server
from tests.support.stack import Stack, polling_bot
from tests.test_e2e import USER, _ask, stack_streams_empty

QUESTION = "How much ORS for a 2-year-old with diarrhoea?"


async def test_worker_answers_through_llama_server(
    stack: Stack,
    running_bot: Any,
    worker_process: Any,
    llama_server_url: str,
    sessionmaker: async_sessionmaker[AsyncSession],
    tiny_model_path: Path,
) -> None:
    """The bot, Redis, the database and a worker on INFERENCE_URL: the user gets one answer, recorded
    with the server's model name, its prompt exactly the embedded worker's (same token count)."""
    await give_consent(stack.stub, USER, "both")
    worker = await worker_process(INFERENCE_URL=f"{llama_server_url}/v1", MODEL_PATH="/nonexistent.gguf")
    update, answer = await _ask(stack, QUESTION)
    await worker.wait_for_line("answer.published")
    assert answer.params["reply_parameters"]["message_id"] == update["message"]["message_id"]
    assert len([c for c in stack.stub.calls_of("sendMessage") if texts.REMINDER in c.params["text"]]) == 1
    assert await stack_streams_empty(stack)  # the answer is acked once recorded
    async with sessionmaker() as session:
        question = (await session.execute(select(Question))).scalar_one()
        record = (await session.execute(select(Answer))).scalar_one()
    engine = await asyncio.to_thread(Engine, tiny_model_path, n_ctx=2048, n_threads=1)
    try:
        expected_prompt_tokens = engine.count_tokens(build_prompt(QUESTION))
    finally:
        engine.close()
    assert question.status == "answered" and record.model_sha256 == MODEL_ALIAS
    assert record.text and record.text in answer.params["text"]
    assert 0 < record.completion_tokens <= 24  # the worker's MAX_ANSWER_TOKENS
    assert record.prompt_tokens == expected_prompt_tokens
    assert record.first_token_at is not None and record.worker


async def _predicted_total(client: httpx.AsyncClient) -> int:
    """Tokens the server generated so far, once no request is processing (bounded wait)."""
    async with asyncio.timeout(20):
        while True:
            lines = (await client.get("/metrics")).text.splitlines()
            pairs = [line.split() for line in lines if line.startswith("llamacpp:")]
            values = {pair[0]: float(pair[1]) for pair in pairs}
            if values.get("llamacpp:requests_processing") == 0:
                return int(values["llamacpp:tokens_predicted_total"])
            await asyncio.sleep(0.05)


async def test_withdrawn_request_stops_the_server_generating(llama_server_url: str) -> None:
    """A request withdrawn mid-answer ends 'cancelled', and the server stops generating it."""
    engine = RemoteEngine(llama_server_url)
    checks = 0

    def should_stop() -> bool:  # asked before the request, after each piece and while waiting
        nonlocal checks
        checks += 1
        return checks > 5

    async with httpx.AsyncClient(base_url=llama_server_url) as client:
        try:
            await engine.connect()
            before = await _predicted_total(client)
            request = Request(build_prompt(QUESTION), max_tokens=1500, should_stop=should_stop)
            result = await engine.complete(request)
        finally:
            await engine.aclose()
        generated = await _predicted_total(client) - before
    assert result.stop_reason == "cancelled" and result.completion_tokens <= 5  # checks: 1 + 1 a piece
    assert generated < 200  # the server stopped soon after the stream closed, far from the 1500 budget


async def test_prompt_too_long_for_the_server_is_refused(llama_server_url: str) -> None:
    """A prompt over the server's context is a PromptTooLongError (the worker's 'too long' notice)."""
    engine = RemoteEngine(llama_server_url)
    try:
        assert await engine.connect() == MODEL_ALIAS
        with pytest.raises(PromptTooLongError):
            await engine.complete(Request(build_prompt("fever " * 6000), max_tokens=8))
    finally:
        await engine.aclose()


async def test_unreachable_server_fails_clearly() -> None:
    """No server at INFERENCE_URL: a BackendError naming the (redacted) URL after the tries."""
    from inference.remote import BackendError

    engine = RemoteEngine("http://user:secret@127.0.0.1:9/v1")
    try:
        with pytest.raises(BackendError, match=r"127\.0\.0\.1:9") as caught:
            await engine.connect(attempts=2)
    finally:
        await engine.aclose()
    assert "secret" not in str(caught.value)


def test_bench_against_the_server_prints_both_sides(
    llama_server_url: str, tiny_model_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``bench --against URL --json``: both sides measured on the same questions, server memory seen."""
    from bot.cli import main

    args = ["--against", llama_server_url, "--counts", "1,2", "--answer-tokens", "4", "--ctx", "1024"]
    code = main(["bench", "--model", str(tiny_model_path), "--json", *args])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["server_model"] == MODEL_ALIAS
    for side in ("worker", "server"):
        assert report[side]["ttft_s"] > 0 and report[side]["generation_tps"] > 0
        assert set(report[side]["together_s"]) == {"1", "2"}
        assert report[side]["peak_rss_bytes"] > 0  # the server listens on this machine: its RSS is seen


async def test_a_request_waits_for_a_server_that_is_away(
    llama_server_binary: Path, tiny_model_path: Path, tmp_path: Path
) -> None:
    """Connection refused before anything streamed: the request is sent again once the server is up."""
    port = free_port()
    engine = RemoteEngine(f"http://127.0.0.1:{port}", model=MODEL_ALIAS, timeout_s=120)
    with contextlib.ExitStack() as servers, structlog.testing.capture_logs() as logs:
        task = asyncio.create_task(engine.complete(Request(build_prompt(QUESTION), max_tokens=4)))
        async with asyncio.timeout(20):
            while not any(entry["event"] == "backend.unavailable" for entry in logs):  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        server = running_llama_server(llama_server_binary, tiny_model_path, tmp_path / "log", port=port)
        await asyncio.to_thread(servers.enter_context, server)
        try:
            result = await task
        finally:
            await engine.aclose()
    assert result.stop_reason == "length" and result.completion_tokens == 4


def test_run_starts_its_worker_without_a_model_file_when_inference_url_is_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`run` with INFERENCE_URL passes no MODEL_PATH to its worker (it loads no model)."""
    from bot.process.local_worker import worker_env

    monkeypatch.delenv("MODEL_PATH", raising=False)
    assert "MODEL_PATH" not in worker_env("redis://127.0.0.1:6379/0", "")
    assert worker_env("redis://127.0.0.1:6379/0", "/m.gguf")["MODEL_PATH"] == "/m.gguf"


def _long_question(number: int) -> str:
    """About 1,500 characters (some 660 tokens of the tiny model), no danger sign in it."""
    sentence = "The family asks how often the child should drink clean water during the hot season. "
    return f"Question {number}: " + sentence * 17


async def test_a_long_history_is_trimmed_for_the_server_and_the_answer_comes(
    stack: Stack,
    worker_process: Any,
    llama_server_url: str,
    sessionmaker: async_sessionmaker[AsyncSession],
    tiny_model_path: Path,
) -> None:
    """Three long questions in one private conversation, through the bot and a worker on INFERENCE_URL:
    the second holds the first turn; the third would overflow the server's 2,048-token slot with both
    earlier turns, so the oldest is dropped (as the embedded engine does) and it is answered, not
    refused. N_CTX is set far above the slot: the server's own context (from /v1/models) is what counts."""
    from tests.test_conversation_e2e import ADA, ask

    worker = await worker_process(
        INFERENCE_URL=f"{llama_server_url}/v1", MODEL_PATH="/nonexistent.gguf", N_CTX="16384"
    )
    questions = [_long_question(n) for n in (1, 2, 3)]
    async with polling_bot(stack):
        await give_consent(stack.stub, ADA)
        records = [(await ask(stack, sessionmaker, text, ADA))[0] for text in questions]
    assert '"tokenizer": "server"' in worker.output and '"n_ctx": 2048' in worker.output
    engine = await asyncio.to_thread(Engine, tiny_model_path, n_ctx=2048, n_threads=1)
    try:
        turns = [(text, record.text or "") for text, record in zip(questions, records, strict=True)]
        whole = engine.count_tokens(build_prompt(questions[2], history=turns[:2]))
        kept_one = engine.count_tokens(build_prompt(questions[2], history=turns[1:2]))
        second = engine.count_tokens(build_prompt(questions[1], history=turns[:1]))
    finally:
        engine.close()
    assert whole + 24 > 2048  # both earlier turns and the answer budget would not fit the slot
    assert [record.status for record in records] == ["ok", "ok", "ok"]
    assert [record.turn for record in records] == [1, 2, 3]
    assert records[1].prompt_tokens == second  # nothing to trim yet: the first turn is in
    assert records[2].prompt_tokens == kept_one  # the oldest turn dropped, the newest kept
    for text in questions:
        assert text[:40] not in worker.output  # no question text in the worker's log


def _counter(metrics_text: str, name: str, label: str) -> float:
    """The value of ``name{reason="label"}`` in Prometheus text (0 when absent)."""
    needle = f'{name}{{reason="{label}"}} '
    return sum(float(line.split()[-1]) for line in metrics_text.splitlines() if line.startswith(needle))


async def test_a_rate_limited_server_answers_every_question_exactly_once(
    stack: Stack,
    running_bot: Any,
    worker_process: Any,
    llama_server_url: str,
    sessionmaker: async_sessionmaker[AsyncSession],
    redis_client: Any,
) -> None:
    """Two workers on INFERENCE_URL behind a relay that answers the first completions 429 (Retry-After:
    1 s) and then 503 (no header): the waits outlast the 1 s claim, yet each of four questions is
    generated once, answered once, nothing is dead-lettered, no claim is lost, the waits are counted
    in meditron_backend_retries, and no question text reaches a log."""
    relay = FaultyRelay(llama_server_url, [Fault(429, "1")] * 6 + [Fault(503)] * 2)
    await relay.start()
    users = [3001, 3002, 3003, 3004]
    questions = {user: f"How much ORS for a child of {user - 3000} years with diarrhoea?" for user in users}
    try:
        ports = [free_port(), free_port()]
        env = {"INFERENCE_URL": f"{relay.url}/v1", "MODEL_PATH": "/nonexistent.gguf", "MAX_SEQUENCES": "1"}
        workers = [
            await worker_process(**env, WORKER_NAME=f"w-busy-{index}", METRICS_PORT=str(port))
            for index, port in enumerate(ports)
        ]
        for user in users:
            await give_consent(stack.stub, user, "both")
        before = len(stack.stub.calls)
        for user in users:
            stack.stub.push_message(questions[user], user_id=user)
        sent = await stack.stub.wait_for(
            "sendMessage", lambda c: texts.REMINDER in c.params["text"], count=4, since=before, timeout=90
        )
        assert await stack_streams_empty(stack)
        async with httpx.AsyncClient(timeout=10) as client:
            scraped = "".join([(await client.get(f"http://127.0.0.1:{p}/metrics")).text for p in ports])
    finally:
        await relay.stop()
    assert relay.faulted == 8 and relay.relayed["/v1/completions"] == 4  # each question generated once
    assert sorted(int(c.params["chat_id"]) for c in sent) == users
    assert len([c for c in stack.stub.calls_of("sendMessage") if texts.REMINDER in c.params["text"]]) == 4
    async with sessionmaker() as session:
        records = list((await session.execute(select(Answer))).scalars())
    assert len(records) == 4 and {r.status for r in records} == {"ok"}
    assert len({r.question_id for r in records}) == 4
    assert await redis_client.xlen(f"{stack.storage.queue_namespace}:dead") == 0
    assert _counter(scraped, "meditron_backend_retries_total", "rate_limited") == 6
    assert _counter(scraped, "meditron_backend_retries_total", "unavailable") == 2
    logs = "".join(worker.output for worker in workers)
    assert "backend.unavailable" in logs and "question.claim_lost" not in logs
    assert "generation.failed" not in logs and "question.released" not in logs
    for text in questions.values():
        assert text not in logs and "with diarrhoea" not in logs


def test_retry_after_in_seconds_or_as_a_date() -> None:
    from datetime import UTC, datetime, timedelta
    from email.utils import format_datetime

    from inference.remote import retry_after_s

    assert retry_after_s("2") == 2.0 and retry_after_s("-3") == 0.0
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 25.0 < (retry_after_s(later) or 0) <= 30.0
    assert retry_after_s(None) is None and retry_after_s("soon") is None


async def test_without_the_servers_tokenizer_prompts_are_counted_by_an_upper_bound(
    llama_server_url: str,
) -> None:
    """A server with no /tokenize (here a relay answering it 404): the worker counts UTF-8 bytes, never
    fewer than the server's tokens, so a history trimmed by that count fits and the answer comes."""
    from inference.prompt import fit_prompt

    relay = FaultyRelay(llama_server_url, [Fault(404)] * 100, path="/tokenize")
    await relay.start()
    exact, bounded = RemoteEngine(llama_server_url), RemoteEngine(relay.url)
    history = [(_long_question(1), "Give ORS after each stool."), (_long_question(2), "نعم، أعط المحلول.")]
    try:
        await exact.connect()
        await bounded.connect()
        assert (exact.tokenizer, bounded.tokenizer) == ("server", "estimate")
        assert exact.n_ctx == bounded.n_ctx == 2048  # the slot's context, from /v1/models
        whole = build_prompt(_long_question(3), history=history)
        assert await bounded.count_tokens(whole) >= await exact.count_tokens(whole) > 2048
        prompt, kept = await fit_prompt(_long_question(3), "en", history, bounded.count_tokens, 2048 - 8)
        result = await bounded.complete(Request(prompt, max_tokens=8))
    finally:
        await exact.aclose()
        await bounded.aclose()
        await relay.stop()
    assert kept < len(history) and result.stop_reason == "length" and result.completion_tokens == 8
