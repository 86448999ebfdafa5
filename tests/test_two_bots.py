"""Two bot processes (``python -m bot.cli bot``) on one Redis and one database behave as one bot.

Both poll the same Bot API stand-in; every update is stored once in the shared update log, and
whichever process reads the log first handles it. To choose which process handles an update, the
test pauses the other one (SIGSTOP) and waits until Redis shows none of its connections in a
blocking read, so the update can only go to the running one; the paused one
keeps everything it had in memory. A grant made through B is then seen by A, a /lang choice made
through A by B, and a /forget handled by A ends B's access at once: with access cached in B's memory
the last step fails. SQLite file and PostgreSQL. Also: a group question held by one bot process is
dropped (and the group told) by the next one after a restart.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from bot.telegram import texts
from bot.telegram.i18n import t
from storage.db import make_engine, make_sessionmaker
from storage.queue import QueueNames
from storage.queue.connection import connect
from storage.repositories.invites import create_invite
from tests.support.consent import give_consent
from tests.support.stack import PSEUDONYM_KEY, LoggedProcess, Stack, polling_bot
from tests.support.telegram_stub import TelegramStub, says
from tests.test_field_e2e import ADA as ADMIN_ADA
from tests.test_field_e2e import CHI, GROUP

ADA = 2024001


def _env(stub: TelegramStub, redis_url: str, db_url: str, data_dir: Path, namespace: str) -> dict[str, str]:
    """One deployment: the same token, Redis, database, data directory and namespace for both."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "REDIS_", "DATABASE_"))}
    env.update(
        TELEGRAM_BOT_TOKEN=stub.token, TELEGRAM_API_URL=stub.base_url, REDIS_URL=redis_url,
        DATABASE_URL=db_url, DATA_DIR=str(data_dir), PSEUDONYM_KEY=PSEUDONYM_KEY,
        QUEUE_NAMESPACE=namespace, POLL_TIMEOUT_S="2", INVITE_ONLY="true", HYGIENE_INTERVAL_S="50",
    )  # fmt: skip
    return env


class Bot:
    """One bot process and its consumer name in the update log."""

    def __init__(self, name: str, process: LoggedProcess, consumer: str) -> None:
        self.name = name  # of its Redis connections
        self.process = process
        self.consumer = consumer

    def pause(self) -> None:
        """SIGSTOP: it runs no code, and keeps its memory."""
        self.process.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT."""
        self.process.process.send_signal(signal.SIGCONT)


@pytest.fixture
async def bots(
    telegram_stub: TelegramStub, redis_url: str, migrated_db_url: str, queue_names: QueueNames, tmp_path: Path
) -> AsyncIterator[tuple[Bot, Bot]]:
    """Bots A and B, both ready; killed after the test."""
    started: list[LoggedProcess] = []
    try:
        pair = []
        for name in (f"{queue_names.namespace}-a", f"{queue_names.namespace}-b"):
            named = f"{redis_url}{'&' if '?' in redis_url else '?'}client_name={name}"
            env = _env(telegram_stub, named, migrated_db_url, tmp_path / "data", queue_names.namespace)
            process = await LoggedProcess.start(sys.executable, "-m", "bot.cli", "bot", env=env)
            started.append(process)
            ready = json.loads(await process.wait_for_line('"bot.ready"'))
            pair.append(Bot(name, process, str(ready["consumer"])))
        assert pair[0].consumer != pair[1].consumer
        yield pair[0], pair[1]
    finally:
        for name, process in zip("AB", started, strict=False):
            process.process.send_signal(signal.SIGCONT)
            await process.stop(signal.SIGKILL)
            print(f"-- bot {name}:\n{process.output}")  # shown when the test fails


async def _not_reading(redis: Redis, bot: Bot) -> None:
    """Wait until no connection of ``bot`` is in a blocking read (Redis would hand it the next entry).

    Each process names its connections (``client_name`` in its REDIS_URL); this polls what Redis
    reports about them (CLIENT LIST flags), it does not guess a duration.
    """
    async with asyncio.timeout(30):
        while any("b" in c["flags"] for c in await redis.client_list() if c["name"] == bot.name):  # noqa: ASYNC110 - another process's state
            await asyncio.sleep(0.05)


async def test_lang_forget_and_grant_made_through_one_process_are_seen_by_the_other(
    bots: tuple[Bot, Bot], telegram_stub: TelegramStub, redis_url: str, migrated_db_url: str
) -> None:
    a, b = bots
    stub = telegram_stub
    engine = make_engine(migrated_db_url)
    async with make_sessionmaker(engine).begin() as session:
        code = await create_invite(session, uses=1, expires_at=None)
    await engine.dispose()
    redis = await connect(redis_url)

    async def only(running: Bot, paused: Bot) -> None:
        running.resume()
        paused.pause()
        await _not_reading(redis, paused)

    try:
        # Through B: the invite is redeemed (the grant) and Ada consents; B has seen her allowed.
        await only(b, a)
        before = len(stub.calls)
        await give_consent(stub, ADA, "both", start=code)
        await stub.wait_for("sendMessage", says(texts.INVITE_ACCEPTED, ADA), since=before)

        # Through A: the grant made by B lets Ada in, and she chooses French.
        await only(a, b)
        before = len(stub.calls)
        stub.push_command("/lang", "fr", user_id=ADA)
        await stub.wait_for("sendMessage", says(t(texts.LANG_SET, "fr"), ADA), since=before)
        assert t(texts.LANG_SET, "fr") != texts.LANG_SET

        # Through B: the choice made through A (her Telegram language stays English).
        await only(b, a)
        before = len(stub.calls)
        stub.push_command("/help", user_id=ADA, language_code="en")
        help_fr = t(texts.HELP, "fr")
        assert help_fr != texts.HELP
        await stub.wait_for("sendMessage", says(help_fr, ADA), since=before)

        # Through A: /forget erases her, her language choice and her grant.
        await only(a, b)
        before = len(stub.calls)
        stub.push_command("/forget", user_id=ADA)
        forgotten = t(texts.FORGET_DONE, "fr").split("{count}")[0]
        await stub.wait_for("sendMessage", says(forgotten, ADA), since=before)

        # Through B, which let her in before: no access now, and English again.
        await only(b, a)
        before = len(stub.calls)
        stub.push_command("/help", user_id=ADA, language_code="en")
        refused = await stub.wait_for("sendMessage", lambda c: c.params["chat_id"] == ADA, since=before)
        assert refused[0].params["text"] == texts.NOT_INVITED
        a.resume()
    finally:
        await redis.aclose()
    assert '"gate.not_allowed"' in b.process.output and '"gate.not_allowed"' not in a.process.output


async def test_a_held_group_question_is_dropped_after_the_bot_restarted(stack: Stack) -> None:
    """Its expiry is in Redis, not a job of the process that held it: the next process reports it."""
    stub = stack.stub
    group = {"chat_id": GROUP, "chat_type": "group", "title": "Team"}
    stub.set_chat_member_status(GROUP, ADMIN_ADA, "creator")
    async with polling_bot(stack, consent_hold_s=4.0):
        stub.push_command("/enable", user_id=ADMIN_ADA, **group)
        await stub.wait_for("sendMessage", says(texts.GROUP_ENABLED, GROUP))
        stub.push_command("/ask", "dose of zinc?", user_id=CHI, **group)
        await stub.wait_for("sendMessage", says("?start=consent", GROUP))
    assert not [c for c in stub.calls_of("sendMessage") if says(texts.GROUP_QUESTION_DROPPED)(c)]
    async with polling_bot(stack, consent_hold_s=4.0):  # the restarted bot
        await stub.wait_for("sendMessage", says(texts.GROUP_QUESTION_DROPPED, GROUP), timeout=15)
    dropped = [c for c in stub.calls_of("sendMessage") if says(texts.GROUP_QUESTION_DROPPED)(c)]
    assert len(dropped) == 1
