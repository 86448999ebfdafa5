"""Handover cases in storage: one per question, claims, texts kept only with research, export, erasure."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage.models import Case, ConsentEvent, ReviewAccount, User, utcnow
from storage.repositories.accounts import add_account
from storage.repositories.audit import verify_chain
from storage.repositories.cases import (
    NewCase,
    claim_case,
    close_case,
    erase_case_texts,
    open_case,
    overdue_cases,
    reply_case,
)
from storage.repositories.consent import latest_consents, record_consent
from storage.repositories.erasure import erase_research_text
from storage.repositories.export import CASE_FIELDS, export_rows
from storage.repositories.users import get_user
from storage.retention import erase_expired
from tests.support.waiting import eventually
from tests.test_consent_storage import PSEUDONYM, seed

Sessions = async_sessionmaker[AsyncSession]


async def _open(session: AsyncSession, user: User, question_id: str, danger: bool = False) -> Case:
    agreed = await record_consent(
        session, user, scope="clinician", new_value="granted", text_version="clinician-1",
        text_sha256="d" * 64, language="en", source="button", question_id=question_id,
    )  # fmt: skip
    new = NewCase(question_id, user, agreed, "en", danger, "the question", "the answer")
    return await open_case(session, new)


async def _clinicians(session: AsyncSession) -> tuple[ReviewAccount, ReviewAccount]:
    first = await add_account(session, "cleo", "clinician-password-1", "clinician")
    second = await add_account(session, "cato", "clinician-password-2", "clinician")
    return first, second


async def test_a_case_round_trip_keeps_texts_with_research_and_exports_its_times(
    sessionmaker: Sessions,
) -> None:
    await seed(sessionmaker, questions=2)
    async with sessionmaker.begin() as session:
        user = await get_user(session, PSEUDONYM)
        assert user is not None
        ids = [row["question_id"] for row in await export_rows(session, utcnow() - timedelta(1), utcnow())]
        case = await _open(session, user, ids[0])
        agreed = await session.get(ConsentEvent, case.consent_id)
        assert agreed is not None and agreed.question_id == ids[0]
        assert await open_case(session, NewCase(ids[0], user, agreed, "en", False, "x", None)) is case  # once
        first, second = await _clinicians(session)
        assert set(await latest_consents(session, user.id)) == {"service", "research"}  # per-question apart
        assert await claim_case(session, case, first.id, first.name)
        assert not await claim_case(session, case, second.id, second.name)  # taken
        assert not await reply_case(session, case, second.id, second.name, "not mine")
        assert await reply_case(session, case, first.id, first.name, "see a clinic today")
        await close_case(session, case.id, delivered=True)
    async with sessionmaker() as session:
        rows = {
            row["question_id"]: row for row in await export_rows(session, utcnow() - timedelta(1), utcnow())
        }
        closed = await session.get(Case, case.id)
        assert await verify_chain(session) > 0
    assert closed is not None and closed.reply_text == "see a clinic today"  # research consent: kept
    row = rows[ids[0]]
    assert row["case_outcome"] == "delivered" and row["case_reply_text"] == "see a clinic today"
    assert 0 <= row["case_claim_s"] <= row["case_reply_s"] <= row["case_close_s"]
    assert all(rows[ids[1]][name] is None for name in CASE_FIELDS)  # never handed over

    async with sessionmaker.begin() as session:  # withdrawal erases the kept case texts
        user = await get_user(session, PSEUDONYM)
        assert user is not None
        await erase_research_text(session, user)
    async with sessionmaker() as session:
        erased = await session.get(Case, case.id)
    assert erased is not None and erased.reply_text is None and erased.question_text is None
    assert erased.reply_sha256 and erased.outcome == "delivered"


async def test_without_research_the_texts_go_when_the_case_closes(sessionmaker: Sessions) -> None:
    await seed(sessionmaker, questions=1)
    async with sessionmaker.begin() as session:
        user = await get_user(session, PSEUDONYM)
        assert user is not None
        question_id = (await export_rows(session, utcnow() - timedelta(1), utcnow()))[0]["question_id"]
        user.research_consent = False
        case = await _open(session, user, question_id, danger=True)
        first, _ = await _clinicians(session)
        assert [c.id for c in await overdue_cases(session, utcnow() + timedelta(minutes=1))] == [case.id]
        await claim_case(session, case, first.id, first.name)
        await reply_case(session, case, first.id, first.name, "please go to the clinic")
        await close_case(session, case.id, delivered=False)
    async with sessionmaker() as session:
        closed = await session.get(Case, case.id)
    assert closed is not None and closed.outcome == "undeliverable"
    assert (closed.question_text, closed.answer_text, closed.reply_text) == (None, None, None)
    assert closed.reply_sha256 is not None


async def test_retention_erases_kept_case_texts(sessionmaker: Sessions) -> None:
    await seed(sessionmaker, questions=1)
    async with sessionmaker.begin() as session:
        user = await get_user(session, PSEUDONYM)
        assert user is not None
        question_id = (await export_rows(session, utcnow() - timedelta(1), utcnow()))[0]["question_id"]
        case = await _open(session, user, question_id)
        first, _ = await _clinicians(session)
        await claim_case(session, case, first.id, first.name)
        await reply_case(session, case, first.id, first.name, "kept for research")
        await close_case(session, case.id, delivered=True)
    await erase_expired(sessionmaker, 1, now=utcnow() + timedelta(days=2))
    async with sessionmaker() as session:
        expired = await session.get(Case, case.id)
        assert await verify_chain(session) > 0
    assert expired is not None and expired.reply_text is None and expired.erased_at is not None


async def _lock_waits(sessionmaker: Sessions) -> bool:
    """Whether a PostgreSQL session waits for a lock (always True on SQLite: nothing to look at)."""
    async with sessionmaker() as session:
        if session.bind.dialect.name != "postgresql":
            return True
        waiting = await session.execute(text("SELECT count(*) FROM pg_locks WHERE NOT granted"))
        return bool(waiting.scalar_one())


async def _close_or_forget(sessionmaker: Sessions, case_id: int, user_id: int, how: str) -> None:
    async with sessionmaker.begin() as session:
        if how == "close":
            await close_case(session, case_id, delivered=True)
        else:
            await erase_case_texts(session, user_id, "forget", all_cases=True)


@pytest.mark.parametrize("how", ["close", "forget"])
async def test_a_reply_committed_while_the_case_closes_or_is_erased_leaves_no_text(
    sessionmaker: Sessions, how: str
) -> None:
    """The console hands the reply to the bot before its transaction commits: the bot's close (or a
    /forget) running meanwhile waits for that commit and wipes the reply text too."""
    await seed(sessionmaker, questions=1)
    async with sessionmaker.begin() as session:
        user = await get_user(session, PSEUDONYM)
        assert user is not None
        question_id = (await export_rows(session, utcnow() - timedelta(1), utcnow()))[0]["question_id"]
        user.research_consent = False
        case = await _open(session, user, question_id)
        first, _ = await _clinicians(session)
        await claim_case(session, case, first.id, first.name)
        case_id, user_id, clinician = case.id, user.id, (first.id, first.name)
    async with sessionmaker.begin() as console:
        replied = await console.get(Case, case_id)
        assert replied is not None
        await reply_case(console, replied, *clinician, "please go to the clinic")
        await console.flush()  # the row is written (and locked) but not committed
        closing = asyncio.create_task(_close_or_forget(sessionmaker, case_id, user_id, how))
        await eventually(lambda: _lock_waits(sessionmaker))  # the bot's transaction waits for this one
        assert not closing.done()
    await closing
    async with sessionmaker() as session:
        done = await session.get(Case, case_id)
    assert done is not None and done.status == "closed"
    assert (done.question_text, done.answer_text, done.reply_text) == (None, None, None)
