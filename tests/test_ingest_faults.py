"""Durable ingest under faults: every question answered exactly once, nothing lost, nothing leaked.

The real bot (PTB) polls the Bot API stand-in; Redis, SQLite/PostgreSQL and the llama.cpp worker are
real. Faults: an update PTB cannot parse inside a batch, flood control on the acknowledgement, Redis
killed and restarted, the database cut off and back (a TCP relay in front of the real PostgreSQL).
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.engine import make_url

from bot.process.private_redis import PrivateRedis
from bot.telegram import texts
from bot.telegram.app import INGEST, build_application
from bot.telegram.ingest import UpdateIngest
from storage.db import make_engine, make_sessionmaker
from storage.migrate import upgrade_async
from storage.models import Answer, Question
from tests.support.consent import give_consent
from tests.support.stack import Stack, answers_per_message, inprocess_worker, running_application
from tests.support.tcp_proxy import TcpProxy
from tests.support.telegram_stub import TelegramStub
from tests.support.waiting import eventually

USERS = (730001, 730002, 730003)
MARKER = "zqxmarker"


def error_replies(stub: TelegramStub) -> int:
    """How often the bot said "something went wrong"."""
    return sum(1 for c in stub.calls_of("sendMessage") if c.params.get("text") == texts.TEMPORARY_ERROR)


@contextlib.asynccontextmanager
async def bot_on(stack: Stack) -> AsyncIterator[UpdateIngest]:
    """The real Application on ``stack``, polling the stand-in; yields its ingest."""
    app = build_application(stack.bot, stack.storage, redis_url=stack.redis_url, database_url=stack.db_url)
    async with running_application(app):
        await stack.stub.wait_until_polling()
        yield app.bot_data[INGEST]


def patient(stack: Stack) -> Stack:
    """The stack with a claim time that a slow shared test machine cannot exceed."""
    stack.storage = stack.storage.model_copy(update={"queue_claim_idle_ms": 600_000})
    return stack


def assert_no_leak(output: str, users: tuple[int, ...]) -> None:
    """No question text and no raw Telegram id in what the processes logged."""
    assert MARKER not in output
    for user in users:
        assert str(user) not in output


async def test_unparseable_update_is_skipped_alone(
    stack: Stack, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """One update PTB cannot parse, in one getUpdates batch with two good ones: both good ones answered."""
    stack, stub = patient(stack), stack.stub
    async with bot_on(stack) as ingest, inprocess_worker(stack):
        for user in USERS[:2]:
            await give_consent(stub, user, "service")
        before = len(stub.calls)
        first = stub.push_message(f"{MARKER} fever in a child, what to do?", user_id=USERS[0])
        stub.push_update(
            "message", {"message_id": 99, "text": f"{MARKER} {USERS[2]}", "from": {"id": USERS[2]}}
        )
        second = stub.push_message(f"{MARKER} cough for two weeks", user_id=USERS[1])
        batches = await stub.wait_for("getUpdates", lambda c: c.ok and len(c.result) == 3, since=before)
        assert batches
        ids = {_key(first), _key(second)}
        await eventually(lambda: _answered(stub, ids), timeout=60)
        await eventually(lambda: _backlog_empty(ingest), timeout=60)
    assert set(answers_per_message(stub).values()) == {1}
    assert error_replies(stub) == 0
    output = capsys.readouterr()
    logs = output.out + output.err + caplog.text
    assert "update.unparseable" in logs
    assert_no_leak(logs, USERS)


async def test_flood_control_on_the_acknowledgement_loses_nothing(stack: Stack) -> None:
    """Telegram refuses the acknowledgement (429, more often than PTB retries): the answer still comes."""
    stack, stub = patient(stack), stack.stub
    async with bot_on(stack), inprocess_worker(stack):
        await give_consent(stub, USERS[0], "service")
        before = len(stub.calls)
        stub.fail_next("sendMessage", error_code=429, retry_after=1, times=5)
        update = stub.push_message("Dose of zinc for diarrhoea?", user_id=USERS[0])
        message_id = _key(update)
        await eventually(lambda: _answered(stub, {message_id}), timeout=60)
        refused = [c for c in stub.calls[before:] if c.method == "sendMessage" and not c.ok]
    assert len(refused) == 5
    assert answers_per_message(stub)[message_id] == 1
    assert error_replies(stub) == 0


@pytest.fixture
async def private_redis(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[PrivateRedis]:
    """A redis-server of this test's own (append-only file), which the test may kill."""
    server = PrivateRedis(Path(tmp_path_factory.mktemp("r", numbered=True)))
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def test_redis_killed_and_back_loses_no_question(
    stack: Stack,
    private_redis: PrivateRedis,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Redis is killed (-9) while questions arrive; once it is back each is answered exactly once."""
    stack, stub = patient(stack), stack.stub
    stack.redis_url = private_redis.url
    stack.storage = stack.storage.model_copy(update={"redis_url": SecretStr(private_redis.url)})
    async with bot_on(stack) as ingest:
        for user in USERS:
            await give_consent(stub, user, "service")
        _kill(private_redis)
        before = len(stub.calls)
        ids = {_key(stub.push_message(f"{MARKER} question {n}", user_id=u)) for n, u in enumerate(USERS)}
        # Telegram handed the updates over while Redis was down: they are not confirmed yet.
        await stub.wait_for("getUpdates", lambda c: c.ok and len(c.result) == 3, since=before)
        await eventually(lambda: _store_failed(ingest), timeout=60)
        private_redis.start()
        async with inprocess_worker(stack):
            await eventually(lambda: _answered(stub, ids), timeout=60)
    assert [answers_per_message(stub)[i] for i in sorted(ids)] == [1, 1, 1]
    assert error_replies(stub) == 0
    output = capsys.readouterr()
    logs = output.out + output.err + caplog.text
    assert "ingest.store_failed" in logs
    assert_no_leak(logs, USERS)


def _kill(server: PrivateRedis) -> None:
    """kill -9 the server (no shutdown, no final fsync)."""
    process = server._process  # the test owns this server
    assert process is not None
    process.send_signal(signal.SIGKILL)
    process.wait()
    server._process = None


@pytest.mark.postgres
async def test_database_away_and_back_loses_nothing(
    stack: Stack,
    fresh_postgres_url: str,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """PostgreSQL unreachable: questions wait and are recorded once it is back; an answer sent during the
    outage is recorded afterwards."""
    await upgrade_async(fresh_postgres_url)
    direct = make_url(fresh_postgres_url)
    proxy = TcpProxy(direct.host or "127.0.0.1", direct.port or 5432)
    await proxy.start()
    stack, stub = patient(stack), stack.stub
    stack.db_url = direct.set(port=proxy.port).render_as_string(hide_password=False)
    stack.storage = stack.storage.model_copy(update={"database_url": SecretStr(stack.db_url)})
    engine = make_engine(fresh_postgres_url)
    sessions = make_sessionmaker(engine)

    async def recorded(status: str, count: int) -> bool:
        async with sessions() as session:
            rows = (await session.execute(select(Question).where(Question.status == status))).scalars().all()
        return len(rows) == count

    try:
        async with bot_on(stack) as ingest:
            await give_consent(stub, USERS[0], "service")
            await give_consent(stub, USERS[1], "service")
            # 1. The database goes away before a question arrives.
            proxy.cut()
            first = _key(stub.push_message(f"{MARKER} first", user_id=USERS[0]))
            await eventually(lambda: _retried(ingest), timeout=60)
            proxy.restore()
            async with inprocess_worker(stack):
                await eventually(lambda: _answered(stub, {first}), timeout=60)
                await eventually(lambda: recorded("answered", 1), timeout=60)
            # 2. The answer is sent while the database is away, and recorded when it is back.
            before = len(stub.calls)
            second = _key(stub.push_message(f"{MARKER} second", user_id=USERS[1]))
            await stub.wait_for(
                "sendMessage", lambda c: "in the queue" in str(c.params.get("text")), since=before
            )
            proxy.cut()
            async with inprocess_worker(stack):
                await eventually(lambda: _answered(stub, {second}), timeout=60)
            assert await recorded("answered", 1)  # not yet
            proxy.restore()
            await eventually(lambda: recorded("answered", 2), timeout=60)
        async with sessions() as session:
            answers = (await session.execute(select(Answer))).scalars().all()
        assert len(answers) == 2 and all(a.sent_at is not None for a in answers)
    finally:
        await proxy.stop()
        await engine.dispose()
    assert answers_per_message(stub)[first] == 1 and answers_per_message(stub)[second] == 1
    assert error_replies(stub) == 0
    output = capsys.readouterr()
    assert_no_leak(output.out + output.err + caplog.text, USERS)


def _key(update: dict[str, Any]) -> tuple[int, int]:
    """(chat id, message id) of a pushed message update."""
    return int(update["message"]["chat"]["id"]), int(update["message"]["message_id"])


async def _answered(stub: TelegramStub, message_ids: set[tuple[int, int]]) -> bool:
    return message_ids <= set(answers_per_message(stub))


async def _backlog_empty(ingest: UpdateIngest) -> bool:
    return await ingest.updates.backlog() == 0


async def _store_failed(ingest: UpdateIngest) -> bool:
    return ingest.store_failures > 0


async def _retried(ingest: UpdateIngest) -> bool:
    return ingest.retries > 0
