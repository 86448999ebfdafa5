"""kill -9 of the bot while it delivers a clinician's reply, then a restart on the same data.

Real processes: `meditron-bot bot` (killed and started again) and `meditron-bot admin` (the clinician
replies through it over HTTP), on one Redis and one database; only Telegram is the stand-in.

A reply goes out at least once and at most once per sent marker: send, then mark sent, then close
the case, then ack. Telegram's sendMessage has no idempotency key, so there is one window the design
accepts a repeat in, as it does for answers: Telegram carried the message out but the bot died before
it heard so. Killed there, the restarted bot sends it again (the user has it twice, never zero).
Killed once the marker is set (the case not closed yet, the entry not acked), the restarted bot takes
the entry over and closes the case without sending again: exactly once. Either way the case closes
once, `meditron-bot audit verify` holds, and no text or Telegram id reaches the logs.
"""

from __future__ import annotations

import asyncio
import re
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
from redis.asyncio import Redis
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.flows.handover import reply_text
from storage.models import AuditEvent, Case
from storage.queue import queue_from_settings
from storage.queue.cases import CaseQueue
from tests.console.browser import cli_env, run_cli
from tests.console.helpers import CLINICIAN, csrf_of
from tests.support.consent import give_consent
from tests.support.handover import agreement, choose
from tests.support.stack import LoggedProcess, Stack
from tests.support.telegram_stub import TelegramStub
from tests.support.waiting import eventually

Sessions = async_sessionmaker[AsyncSession]
USER = 7_305_118_642  # distinctive: its decimal form must not reach any log line
QUESTION = "Can a child with measles take vitamin A twice? crashmarkq"
REPLY = "Yes: vitamin A on day 1 and day 2, by age. crashmarkr"


async def _bot(stack: Stack) -> LoggedProcess:
    """`meditron-bot bot` on the stack, ready."""
    env = stack.worker_env(
        TELEGRAM_BOT_TOKEN=stack.stub.token, TELEGRAM_API_URL=stack.stub.base_url, POLL_TIMEOUT_S="5"
    )
    process = await LoggedProcess.start(sys.executable, "-m", "bot.cli", "bot", env=env)
    await process.wait_for_line("bot.ready")
    return process


async def _open_case(stub: TelegramStub, sessionmaker: Sessions) -> tuple[Case, int]:
    """A question (no worker: it waits in the queue), /human, yes; the case and the question's message id."""
    before = len(stub.calls)
    asked = stub.push_message(QUESTION, user_id=USER)
    await stub.wait_for("sendMessage", lambda c: "in the queue" in str(c.params.get("text")), since=before)
    await choose(stub, USER, await agreement(stub, USER), "yes")
    async with sessionmaker() as session:
        case = (await session.execute(select(Case))).scalar_one()
    return case, int(asked["message"]["message_id"])


async def _reply_through_console(console: str, case_id: int) -> None:
    """The clinician logs in, claims the case, previews and sends REPLY (it is then on the stream)."""
    async with httpx.AsyncClient(base_url=console) as http:
        login = await http.get("/login")
        form = {"csrf": csrf_of(login.text), "name": CLINICIAN[0], "password": CLINICIAN[1], "next": "/"}
        assert (await http.post("/login", data=form)).status_code == 303
        csrf = csrf_of((await http.get(f"/cases/{case_id}")).text)
        assert (await http.post(f"/cases/{case_id}/claim", data={"csrf": csrf})).status_code == 303
        preview = await http.post(f"/cases/{case_id}/preview", data={"csrf": csrf, "reply": REPLY})
        assert re.search(r'id="preview-text"', preview.text)
        sent = await http.post(f"/cases/{case_id}/send", data={"csrf": csrf, "reply": REPLY})
        assert sent.status_code == 303, sent.text


def _replies_received(stub: TelegramStub, question_message: int) -> int:
    """How many messages with the clinician's reply Telegram carried out to the user."""
    return sum(
        1
        for call in stub.calls_of("sendMessage")
        if call.ok
        and int(call.params["chat_id"]) == USER
        and call.params["text"] == reply_text("en", REPLY)
        and call.params["reply_parameters"]["message_id"] == question_message
    )


async def _closed(sessionmaker: Sessions, case_id: int) -> bool:
    async with sessionmaker() as session:
        case = await session.get(Case, case_id)
    return case is not None and case.status == "closed"


async def _replies_left(stack: Stack) -> int:
    """Entries on the replies stream (acked ones are deleted)."""
    redis = Redis.from_url(stack.redis_url)
    try:
        return int(await redis.xlen(CaseQueue(queue_from_settings(redis, stack.storage)).replies))
    finally:
        await redis.aclose()


async def _after_restart(
    stack: Stack, sessionmaker: Sessions, tmp_path: Path, case_id: int, killed: LoggedProcess
) -> LoggedProcess:
    """Start the bot again; wait until it closed the case and acked the reply; check the records."""
    second = await _bot(stack)
    try:
        await eventually(lambda: _closed(sessionmaker, case_id), timeout=60)

        async def acked() -> bool:
            return await _replies_left(stack) == 0

        await eventually(acked, timeout=30)
    finally:
        await second.stop()
    async with sessionmaker() as session:
        case = await session.get(Case, case_id)
        closings = select(func.count()).where(AuditEvent.event == "case.closed")
        assert (await session.execute(closings)).scalar_one() == 1  # closed once
    assert case is not None and case.outcome == "delivered"
    assert "case.delivered" in second.output  # the restarted bot handled the killed one's entry
    env = cli_env(tmp_path, stack.db_url)
    status, stderr = await run_cli(["audit", "verify"], env, "")
    assert status == 0, stderr
    logs = killed.output + second.output
    for secret in (QUESTION, REPLY, "crashmark", str(USER)):
        assert secret not in logs, secret
    return second


async def test_killed_while_telegram_carries_the_reply_out_the_user_gets_it_again_never_zero(
    stack: Stack, sessionmaker: Sessions, clinician_console: str, tmp_path: Path
) -> None:
    stub = stack.stub
    first = await _bot(stack)
    try:
        await stub.wait_until_polling()
        await give_consent(stub, USER, "service")
        case, question_message = await _open_case(stub, sessionmaker)
        # Telegram carries the reply out (the user has it) but its answer never reaches the bot.
        held = stub.hold_next("sendMessage", lambda p: p.get("text") == reply_text("en", REPLY))
        await _reply_through_console(clinician_console, case.id)
        await asyncio.wait_for(held.reached.wait(), timeout=30)
    finally:
        await first.stop(signal.SIGKILL)
    held.release()
    assert _replies_received(stub, question_message) == 1
    assert not await _closed(sessionmaker, case.id)
    await _after_restart(stack, sessionmaker, tmp_path, case.id, first)
    # The window the design accepts: sent, not yet marked, so sent again. Never zero, at most twice.
    assert _replies_received(stub, question_message) == 2


async def test_killed_after_the_reply_was_marked_sent_the_user_gets_it_exactly_once(
    stack: Stack, sessionmaker: Sessions, clinician_console: str, tmp_path: Path
) -> None:
    stub = stack.stub
    redis = Redis.from_url(stack.redis_url)
    first = await _bot(stack)
    try:
        await stub.wait_until_polling()
        await give_consent(stub, USER, "service")
        case, question_message = await _open_case(stub, sessionmaker)
        sent_key = queue_from_settings(redis, stack.storage).names.sent_key(f"case-{case.id}")
        held = stub.hold_next("sendMessage", lambda p: p.get("text") == reply_text("en", REPLY))
        await _reply_through_console(clinician_console, case.id)
        await asyncio.wait_for(held.reached.wait(), timeout=30)
        # The database now holds the case's row: the bot hears Telegram's answer and marks the reply
        # sent, then waits to close the case; it is killed there.
        async with sessionmaker.begin() as blocker:
            await blocker.execute(select(Case).where(Case.id == case.id).with_for_update())
            held.release()
            await eventually(_exists(redis, sent_key), timeout=30)
            await first.stop(signal.SIGKILL)
    finally:
        await first.stop(signal.SIGKILL)
        await redis.aclose()
    assert _replies_received(stub, question_message) == 1
    assert not await _closed(sessionmaker, case.id)
    await _after_restart(stack, sessionmaker, tmp_path, case.id, first)
    assert _replies_received(stub, question_message) == 1  # not sent again


def _exists(redis: Redis, key: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return bool(await redis.exists(key))

    return check
