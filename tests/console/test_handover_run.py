"""Handover through the real processes: `meditron-bot run` and `meditron-bot admin` on one DATA_DIR.

`run` is the bot, its local worker (a tiny gemma2 model) and its private Redis, one process tree,
against the Bot API stand-in. `meditron-bot admin` serves the console as a process of its own on the
same DATA_DIR and database: it finds run's private Redis there (the socket under DATA_DIR/redis) and
hands clinicians' replies to the bot through it. The accounts are made with `meditron-bot admin
add-user`, the chain is checked with `meditron-bot audit verify`. One `run` per database:

- a user asks, taps "Ask a clinician" under the answer and agrees; the on-call chat gets the case's
  link (never its text) once it waits past HANDOVER_ALERT_MIN; the clinician opens that link, claims
  the case, previews and sends a reply through the CSRF-protected form; the user gets it once, as a
  reply to their question, marked as from a clinician; the case closes and its texts go;
- a reviewer gets 403 on the cases; a user who declines (via /human) opens no case;
- /forget erases an open case's texts from every database row;
- every step is in the audit chain (opened, read, claimed, replied, closed; the forgotten case's
  closing is its erasure), `meditron-bot audit verify` passes, the reply went out once in all;
- no question, answer or reply text is left in any database row, and neither process logged a
  text or a Telegram id.

HANDOVER_ALERT_MIN accepts any positive number of minutes: 0.001 (60 ms) makes every case overdue
at the next check (HANDOVER_CHECK_S 0.2); the test waits for the stand-in's call, not for a clock.
"""

from __future__ import annotations

import contextlib
import json
import re
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from markupsafe import escape
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.flows.handover import reply_text
from bot.telegram import texts
from storage.db import make_engine, make_sessionmaker
from storage.models import Case, ConsentEvent
from tests.console.browser import add_user, run_cli
from tests.console.helpers import CLINICIAN, REVIEWER, audit_rows, csrf_of, login
from tests.support.consent import give_consent
from tests.support.databases import every_row
from tests.support.handover import agreement, choose, with_button
from tests.support.llama_server import free_port
from tests.support.stack import LoggedProcess
from tests.support.telegram_stub import Call, TelegramStub
from tests.support.waiting import eventually
from tests.test_run import _env, _start

Sessions = async_sessionmaker[AsyncSession]
ASKER, DECLINER, FORGETTER = 7_305_118_651, 7_305_118_652, 7_305_118_653  # distinctive in a log
ONCALL = -1_007_305_118_654
QUESTION = "How much ORS for a 2-year-old with diarrhoea? hvrunask"
DECLINED = "Is a rash after amoxicillin an allergy? hvrundecline"
FORGOTTEN = "Can I give ibuprofen to a child with dengue? hvrunforget"
REPLY = "Give 50-100 ml ORS after each loose stool & keep breastfeeding. hvrunreply"
WAIT_S = 30.0  # for any one step (two CPU cores, shared)
SETTINGS = {"ONCALL_CHAT_ID": str(ONCALL), "HANDOVER_ALERT_MIN": "0.001", "HANDOVER_CHECK_S": "0.2"}


@pytest.fixture
async def sessions(db_url: str) -> AsyncIterator[Sessions]:
    """Sessions on the database `run` and the console share (the test only reads it)."""
    engine = make_engine(db_url)
    try:
        yield make_sessionmaker(engine)
    finally:
        await engine.dispose()


async def _cases(sessions: Sessions) -> list[Case]:
    async with sessions() as session:
        return list((await session.execute(select(Case).order_by(Case.id))).scalars())


async def _clinician_consents(sessions: Sessions) -> list[str]:
    async with sessions() as session:
        query = (
            select(ConsentEvent.new_value).where(ConsentEvent.scope == "clinician").order_by(ConsentEvent.id)
        )
        return list((await session.execute(query)).scalars())


async def _asked(stub: TelegramStub, user: int, question: str) -> tuple[int, Call]:
    """``user`` asks ``question``; its message id and the answer (with the "Ask a clinician" button)."""
    before = len(stub.calls)
    asked = stub.push_message(question, user_id=user)
    offered = with_button("hv:ask:", user)
    answer = await stub.wait_for("sendMessage", offered, since=before, timeout=3 * WAIT_S)
    return int(asked["message"]["message_id"]), answer[-1]


async def _console(env: dict[str, str], port: int) -> LoggedProcess:
    """`meditron-bot admin --port PORT` (no REDIS_URL: it finds run's private Redis), once it listens."""
    console = await LoggedProcess.start(
        sys.executable, "-m", "bot.cli", "admin", "--port", str(port), env=env
    )
    await console.wait_for_line("Uvicorn running on")
    return console


@contextlib.asynccontextmanager
async def _signed_in(url: str, account: tuple[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the console at ``url``, signed in through the login form."""
    async with httpx.AsyncClient(base_url=url, timeout=WAIT_S) as http:  # a loaded machine hashes slowly
        assert (await login(http, *account)).status_code == 303
        yield http


async def _clinician_replies(stub: TelegramStub, url: str, case: Case, link: str) -> None:
    """The clinician opens the alert's link, claims the case, previews and sends REPLY as a browser does."""
    async with _signed_in(url, CLINICIAN) as http:
        listing = await http.get("/cases")
        assert listing.status_code == 200 and f'href="/cases/{case.id}"' in listing.text
        assert QUESTION not in listing.text  # the list shows no text
        page = await http.get(link)
        assert page.status_code == 200 and str(escape(QUESTION)) in page.text
        assert case.answer_text and str(escape(case.answer_text)) in page.text
        csrf = csrf_of(page.text)
        assert (await http.post(f"/cases/{case.id}/claim", data={"csrf": "forged"})).status_code == 403
        assert (await http.post(f"/cases/{case.id}/claim", data={"csrf": csrf})).status_code == 303
        preview = await http.post(f"/cases/{case.id}/preview", data={"csrf": csrf, "reply": REPLY})
        shown = re.search(r'id="preview-text">(.*?)</div>', preview.text, re.S)
        assert shown and shown.group(1) == str(escape(reply_text("en", REPLY)))  # exactly what is sent
        sent = await http.post(f"/cases/{case.id}/send", data={"csrf": csrf, "reply": REPLY})
        assert sent.status_code == 303 and sent.headers["location"] == f"/cases?sent={case.id}", sent.text


async def _answered_by_a_clinician(stub: TelegramStub, sessions: Sessions, url: str) -> Case:
    """The whole loop for ASKER: ask, hand over, the on-call alert, the clinician's reply, delivered once."""
    await give_consent(stub, ASKER, "service")
    question_message, answer = await _asked(stub, ASKER, QUESTION)
    before = len(stub.calls)
    opened = await choose(stub, ASKER, await agreement(stub, ASKER, answer), "yes")
    assert opened == texts.HANDOVER_OPENED.format(minutes=1)  # 0.001 min: never "within 0 minutes"
    [case] = await _cases(sessions)
    assert case.status == "open" and case.question_text == QUESTION and case.answer_text

    link = f"{url}/cases/{case.id}"
    to_oncall = lambda c: int(c.params["chat_id"]) == ONCALL  # noqa: E731
    alert = (await stub.wait_for("sendMessage", to_oncall, since=before, timeout=WAIT_S))[0]
    assert link in alert.params["text"] and "without a clinician" in alert.params["text"]
    assert "ORS" not in alert.params["text"] and case.answer_text.strip() not in alert.params["text"]
    waiting = lambda c: int(c.params["chat_id"]) == ASKER and c.params["text"] == texts.HANDOVER_WAITING  # noqa: E731
    await stub.wait_for("sendMessage", waiting, since=before, timeout=WAIT_S)  # told it still waits

    await _clinician_replies(stub, url, case, link)

    async def closed() -> bool:
        return (await _cases(sessions))[0].status == "closed"

    await eventually(closed, timeout=WAIT_S)
    replies = [
        c for c in stub.calls_of("sendMessage") if c.ok and c.params["text"] == reply_text("en", REPLY)
    ]
    assert len(replies) == 1, stub.summary()  # once
    [reply] = replies
    assert int(reply.params["chat_id"]) == ASKER
    assert reply.params["reply_parameters"]["message_id"] == question_message  # a reply to the question
    assert reply.params["text"].startswith("🩺 Reply from a clinician of the study team")
    assert with_button("hv:up:", ASKER)(reply)  # rated like an answer
    [done] = await _cases(sessions)
    assert done.outcome == "delivered" and done.claimed_at and done.replied_at and done.closed_at
    assert done.question_text is None and done.answer_text is None and done.reply_text is None  # no research
    assert done.reply_sha256
    return case


async def _reviewer_refused(url: str, case_id: int) -> None:
    async with _signed_in(url, REVIEWER) as http:
        assert (await http.get("/cases")).status_code == 403
        assert (await http.get(f"/cases/{case_id}")).status_code == 403


async def _declined(stub: TelegramStub, sessions: Sessions) -> None:
    """DECLINER asks, sends /human and says no: no case, a declined consent event."""
    await give_consent(stub, DECLINER, "service")
    await _asked(stub, DECLINER, DECLINED)
    assert await choose(stub, DECLINER, await agreement(stub, DECLINER), "no") == texts.HANDOVER_DECLINED
    assert len(await _cases(sessions)) == 1
    assert await _clinician_consents(sessions) == ["granted", "declined"]


async def _forgotten(stub: TelegramStub, sessions: Sessions) -> str:
    """FORGETTER hands a question over, then sends /forget: the open case's texts leave the database."""
    await give_consent(stub, FORGETTER, "both")  # research too: its question row holds the text
    _, answer = await _asked(stub, FORGETTER, FORGOTTEN)
    await choose(stub, FORGETTER, await agreement(stub, FORGETTER, answer), "yes")
    case = (await _cases(sessions))[-1]
    assert case.question_text == FORGOTTEN and case.answer_text and case.status == "open"
    before = len(stub.calls)
    stub.push_command("/forget", user_id=FORGETTER)
    erased = lambda c: int(c.params["chat_id"]) == FORGETTER and "I erased everything" in c.params["text"]  # noqa: E731
    await stub.wait_for("sendMessage", erased, since=before, timeout=WAIT_S)
    [gone] = [c for c in await _cases(sessions) if c.id == case.id]
    assert gone.question_text is None and gone.answer_text is None and gone.earlier_turns is None
    assert gone.status == "closed" and gone.outcome == "erased" and gone.erased_at is not None
    return case.answer_text


@pytest.mark.timeout(300)
async def test_handover_through_run_and_the_admin_console(
    telegram_stub: TelegramStub, tiny_model_path: Path, tmp_path: Path, db_url: str, sessions: Sessions
) -> None:
    stub, data_dir = telegram_stub, tmp_path  # SQLite: run's default file, DATA_DIR/meditron.db
    stub.add_chat(ONCALL, chat_type="supergroup", title="On call")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    extra = {**SETTINGS, "CONSOLE_URL": url}
    if not db_url.startswith("sqlite"):
        extra["DATABASE_URL"] = db_url
    env = _env(stub, data_dir, tiny_model_path, 16, **extra)  # every command: the same environment
    run = await _start(stub, data_dir, tiny_model_path, 16, **extra)
    console: LoggedProcess | None = None
    try:
        await add_user(env, CLINICIAN, "clinician")
        await add_user(env, REVIEWER, "reviewer")
        console = await _console(env, port)
        case = await _answered_by_a_clinician(stub, sessions, url)
        await _reviewer_refused(url, case.id)
        await _declined(stub, sessions)
        answers = [case.answer_text or "", await _forgotten(stub, sessions)]
    finally:
        if console is not None:
            await console.stop()
        assert await run.stop(signal.SIGTERM) == 0, run.output
    status, stderr = await run_cli(["audit", "verify"], env, "")
    assert status == 0, stderr
    steps = {"case.opened": 2, "case.read": 1, "case.claimed": 1, "case.replied": 1, "case.closed": 2}
    assert {step: len(await audit_rows(sessions, step)) for step in steps} == steps  # every step audited
    closings = [json.loads(row.payload)["outcome"] for row in await audit_rows(sessions, "case.closed")]
    assert sorted(closings) == ["delivered", "erased"]  # the forgotten case is closed by its erasure
    erasures = [json.loads(row.payload) for row in await audit_rows(sessions, "data.erased")]
    assert {"cases": 1, "reason": "forget"} in erasures
    replies = [c for c in stub.calls_of("sendMessage") if c.params["text"] == reply_text("en", REPLY)]
    assert len(replies) == 1  # still once, after everything else the run did

    rows = await every_row(sessions)
    texts_sent = [QUESTION, DECLINED, FORGOTTEN, REPLY, *(a.strip() for a in answers if len(a.strip()) > 8)]
    assert [t for t in texts_sent if t in rows or repr(t)[1:-1] in rows] == []
    logs = run.output + (console.output if console else "")
    assert "case.delivered" in run.output and "case.overdue" in run.output  # the bot's event lines
    assert "/cases" in logs  # and the console's access log are in there
    leaked = [t for t in [*texts_sent, "hvrun", stub.token] if t in logs]
    leaked += [str(i) for i in (ASKER, DECLINER, FORGETTER, abs(ONCALL)) if str(i) in logs]
    assert leaked == []
    if db_url.startswith("sqlite"):
        assert (data_dir / "meditron.db").exists()
