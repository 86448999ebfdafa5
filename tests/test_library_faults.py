"""The database away while grounded questions are handled: they wait, and are answered with their sources.

Real processes: ``meditron-bot library add`` (the guideline library), ``meditron-bot bot`` (polling the
stand-in) and ``meditron-bot worker``, on one Redis and a PostgreSQL reached through a TCP relay the test
cuts and restores. SQLite is not tested here: it is a file in the bot's own data directory, which does not
go away while the bot runs (a disk gone is another fault).

What is right: retrieval reads the library in the database, so a question that arrives while the database
is away cannot be grounded. Answering it without passages would tell the user it is not from the study's
guidelines when it is; so it is not acknowledged or answered yet: its update stays stored and is handled
again after a backoff, until the database is back, and then answered once, with its Sources part. An
answer already on its way when the database goes away carries its sources with it (in the queue's
message), is sent during the outage, and recorded once the database is back. The records and the audit
log name the passages used; /sources shows them; nothing of the text or the ids is logged.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url

from bot.telegram import texts
from storage.db import make_engine, make_sessionmaker
from storage.migrate import upgrade_async
from storage.models import Answer, AuditEvent, LibraryPassage, Question
from storage.queue import QueueNames
from tests.support.consent import give_consent
from tests.support.stack import PSEUDONYM_KEY, LoggedProcess, answers_per_message
from tests.support.tcp_proxy import TcpProxy
from tests.support.telegram_stub import Call, TelegramStub
from tests.support.waiting import eventually

GUIDELINES = Path(__file__).parent / "support" / "library" / "guidelines.md"
ADA, BEN = 7_410_001, 7_410_002
DIARRHOEA = "How much ORS should I give a toddler who is a bit dehydrated from loose stools?"
PNEUMONIA = "What amoxicillin dose for an infant with pneumonia and fast breathing?"
DIARRHOEA_SOURCE = "[1] Field Guideline Sample — Diarrhoea › Some dehydration"
PNEUMONIA_SOURCE = "[1] Field Guideline Sample — Pneumonia"


@pytest.fixture
async def relayed_postgres(fresh_postgres_url: str) -> AsyncIterator[tuple[str, TcpProxy]]:
    """A migrated PostgreSQL database: its URL through a relay the test can cut, and the relay."""
    await upgrade_async(fresh_postgres_url)
    direct = make_url(fresh_postgres_url)
    relay = TcpProxy(direct.host or "127.0.0.1", direct.port or 5432)
    await relay.start()
    try:
        yield direct.set(port=relay.port).render_as_string(hide_password=False), relay
    finally:
        await relay.stop()


def _env(
    stub: TelegramStub, redis_url: str, db_url: str, data: Path, names: QueueNames, model: Path
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "REDIS_", "DATABASE_"))}
    env.update(
        TELEGRAM_BOT_TOKEN=stub.token, TELEGRAM_API_URL=stub.base_url, REDIS_URL=redis_url,
        DATABASE_URL=db_url, DATA_DIR=str(data), PSEUDONYM_KEY=PSEUDONYM_KEY,
        QUEUE_NAMESPACE=names.namespace, QUEUE_CLAIM_IDLE_MS="600000", POLL_TIMEOUT_S="2",
        HYGIENE_INTERVAL_S="50", MODEL_PATH=str(model), N_CTX="2048", MAX_ANSWER_TOKENS="8",
    )  # fmt: skip
    return env


def _answer_to(user: int) -> Callable[[Call], bool]:
    return lambda c: int(c.params["chat_id"]) == user and texts.REMINDER in str(c.params.get("text", ""))


@pytest.mark.postgres
@pytest.mark.timeout(180)
async def test_grounded_questions_wait_for_the_database_and_keep_their_sources(
    telegram_stub: TelegramStub,
    redis_url: str,
    queue_names: QueueNames,
    fresh_postgres_url: str,
    relayed_postgres: tuple[str, TcpProxy],
    tiny_model_path: Path,
    tmp_path: Path,
) -> None:
    stub, (db_url, relay) = telegram_stub, relayed_postgres
    env = _env(stub, redis_url, db_url, tmp_path / "data", queue_names, tiny_model_path)
    imported = await LoggedProcess.start(
        sys.executable, "-m", "bot.cli", "library", "add", str(GUIDELINES), env=env
    )
    await asyncio.wait_for(imported.process.wait(), 120)
    assert await imported.stop() == 0, imported.output  # it had ended: stop only reads the rest
    processes = [imported]
    engine = make_engine(fresh_postgres_url)  # the test reads the database directly, not through the relay
    sessions = make_sessionmaker(engine)
    try:
        for argv, ready in ((["worker"], "worker.ready"), (["bot"], '"bot.ready"')):
            process = await LoggedProcess.start(sys.executable, "-m", "bot.cli", *argv, env=env)
            processes.append(process)
            await process.wait_for_line(ready, timeout=120)
        bot = processes[-1]
        await stub.wait_until_polling(timeout=30)
        await give_consent(stub, ADA)
        await give_consent(stub, BEN)

        # 1. The database goes away; a question arrives that the library has a passage for.
        relay.cut()
        first = stub.push_message(DIARRHOEA, user_id=ADA)
        retried = f'"update_id": {first["update_id"]}, '

        async def twice() -> bool:  # its handling failed on the outage, and failed again after a backoff
            return sum('"update.retry_later"' in line and retried in line for line in bot.lines) >= 2

        await eventually(twice, 30)
        assert not any(
            int(c.params["chat_id"]) == ADA and c.params.get("reply_parameters")
            for c in stub.calls_of("sendMessage")
        )  # neither acknowledged nor answered (without its sources) while it cannot be grounded
        relay.restore()
        (answered,) = await stub.wait_for("sendMessage", _answer_to(ADA), timeout=60)

        # 2. An answer on its way when the database goes away: sent with its sources, recorded later.
        before = len(stub.calls)
        held = stub.hold_next(
            "sendMessage", lambda p: int(p["chat_id"]) == BEN and texts.REMINDER in str(p.get("text"))
        )
        second = stub.push_message(PNEUMONIA, user_id=BEN)
        await asyncio.wait_for(held.reached.wait(), 60)  # Telegram has it; the bot waits for the response
        seen = len(bot.lines)
        relay.cut()
        held.release()
        await bot.wait_for_line('"stream_loop.retry"', since=seen, timeout=30)  # recording it failed
        async with sessions() as session:
            newest = select(Question.status).order_by(Question.received_at.desc()).limit(1)
            status = await session.scalar(newest)
        assert status != "answered"  # not recorded while the database is away
        relay.restore()

        async def recorded() -> bool:
            async with sessions() as session:
                return len((await session.execute(select(Answer))).scalars().all()) == 2

        await eventually(recorded, 60)
        (delivered,) = await stub.wait_for("sendMessage", _answer_to(BEN), since=before)
        shown_before = len(stub.calls)
        stub.push_command("/sources", user_id=BEN)
        (shown,) = await stub.wait_for(
            "sendMessage",
            lambda c: texts.SOURCES_INTRO in str(c.params.get("text")),
            since=shown_before,
            timeout=30,
        )
    finally:
        for process in processes:
            await process.stop(signal.SIGKILL)
            print(process.output[-5000:])  # shown when the test fails
    try:
        async with sessions() as session:
            in_order = select(Question).order_by(Question.received_at)
            questions = dict(
                zip((DIARRHOEA, PNEUMONIA), (await session.execute(in_order)).scalars(), strict=True)
            )
            answers = list((await session.execute(select(Answer))).scalars())
            passages = {p.section: p.id for p in (await session.execute(select(LibraryPassage))).scalars()}
            received = {
                e.subject: json.loads(e.payload)
                for e in (
                    await session.execute(select(AuditEvent).where(AuditEvent.event == "question.received"))
                ).scalars()
            }
    finally:
        await engine.dispose()

    for text, source, message in (
        (DIARRHOEA, DIARRHOEA_SOURCE, answered),
        (PNEUMONIA, PNEUMONIA_SOURCE, delivered),
    ):
        body = str(message.params["text"])
        assert f"{texts.SOURCES_HEADING}\n{source}" in body and texts.NOT_FROM_LIBRARY not in body
        section = source.split(" — ", 1)[1]
        question = questions[text]
        assert question.passage_ids and question.passage_ids.split(",")[0] == str(passages[section])
        assert question.library_version and question.status == "answered"
        audited = received[question.id]
        assert audited["passage_ids"] == [int(i) for i in question.passage_ids.split(",")]
        assert audited["library_version"] == question.library_version
    assert PNEUMONIA_SOURCE in str(shown.params["text"]) and "Fast breathing is 50 breaths" in str(
        shown.params["text"]
    )
    assert len(answers) == 2 and all(a.sent_at is not None for a in answers)
    counts = answers_per_message(stub)
    assert [counts[_key(first)], counts[_key(second)]] == [1, 1]  # each answered exactly once
    assert not [c for c in stub.calls_of("sendMessage") if c.params.get("text") == texts.TEMPORARY_ERROR]
    assert not [
        c for c in stub.calls_of("sendMessage") if texts.NOT_FROM_LIBRARY in str(c.params.get("text"))
    ]
    logs = "".join(process.output for process in processes)
    for secret in (DIARRHOEA, PNEUMONIA, "toddler", "amoxicillin dose", str(ADA), str(BEN), stub.token):
        assert secret not in logs


def _key(update: dict[str, Any]) -> tuple[int, int]:
    return int(update["message"]["chat"]["id"]), int(update["message"]["message_id"])
