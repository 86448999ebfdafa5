"""Users, consent and questions/answers through the repository functions, on both backends."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage.errors import StorageError
from storage.models import Answer, AuditEvent, Base, ConsentEvent, Question, User
from storage.repositories.audit import verify_chain
from storage.repositories.consent import record_consent
from storage.repositories.questions import (
    count_questions,
    mark_enqueued,
    record_answer,
    record_question,
    set_question_status,
)
from storage.repositories.users import get_or_create_user, get_user

Sessions = async_sessionmaker[AsyncSession]
TEXT_SHA = "c" * 64
T0 = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


async def _consent(session: AsyncSession, user: User, scope: str, new_value: str) -> ConsentEvent:
    """Record one consent change with fixed text metadata."""
    return await record_consent(
        session,
        user,
        scope=scope,
        new_value=new_value,
        text_version="v1",
        text_sha256=TEXT_SHA,
        language="fr",
        source="button",
    )


async def _question(session: AsyncSession, user: User, text: str, research: bool) -> Question:
    """Record one private-chat question."""
    return await record_question(
        session,
        question_id=uuid.uuid4().hex,
        user=user,
        chat_pseudonym="d" * 64,
        chat_type="private",
        language="fr",
        text=text,
        research=research,
        received_at=T0,
    )


async def _answer(
    session: AsyncSession, question_id: str, text: str, sent_at: datetime | None = T0
) -> Answer:
    """Record a successful answer (sent at ``sent_at``)."""
    return await record_answer(
        session,
        question_id=question_id,
        text=text,
        status="ok",
        model_sha256="e" * 64,
        prompt_version="p1",
        prompt_tokens=120,
        completion_tokens=40,
        taken_at=T0 + timedelta(seconds=1),
        first_token_at=T0 + timedelta(seconds=5),
        finished_at=T0 + timedelta(seconds=9),
        sent_at=sent_at,
        worker="worker-1",
        stop_reason="eos",
    )


async def _all_values(session: AsyncSession) -> list[Any]:
    """Every value of every column of every table."""
    values: list[Any] = []
    for table in Base.metadata.sorted_tables:
        for row in (await session.execute(select(table))).all():
            values.extend(row)
    return values


def _sha(text: str) -> str:
    """sha256 hex of UTF-8 text."""
    return hashlib.sha256(text.encode()).hexdigest()


async def test_get_or_create_user_is_idempotent(sessionmaker: Sessions) -> None:
    """The second call returns the same row; get_user finds it; unknown pseudonyms give None."""
    async with sessionmaker.begin() as session:
        created = await get_or_create_user(session, "a" * 64, "fr")
    async with sessionmaker.begin() as session:
        again = await get_or_create_user(session, "a" * 64, "en")
        found = await get_user(session, "a" * 64)
        missing = await get_user(session, "b" * 64)
    assert again.id == created.id
    assert found is not None
    assert found.id == created.id
    assert found.language == "fr"
    assert missing is None
    assert found.created_at.tzinfo is UTC


async def test_consent_events_record_old_and_new_and_update_user(sessionmaker: Sessions) -> None:
    """Each change is one event with old -> new; the user's flags follow; audit has each change."""
    async with sessionmaker.begin() as session:
        user = await get_or_create_user(session, "a" * 64, "fr")
        await _consent(session, user, "service", "granted")
        await _consent(session, user, "research", "granted")
        await _consent(session, user, "research", "withdrawn")
    async with sessionmaker.begin() as session:
        events = (await session.execute(select(ConsentEvent).order_by(ConsentEvent.id))).scalars()
        changes = [(e.scope, e.old_value, e.new_value, e.text_version) for e in events]
        stored = await get_user(session, "a" * 64)
        audit = (await session.execute(select(AuditEvent).order_by(AuditEvent.id))).scalars()
        audited = [(a.event, a.subject, a.payload) for a in audit]
        assert await verify_chain(session) == 3
    assert changes == [
        ("service", None, "granted", "v1"),
        ("research", None, "granted", "v1"),
        ("research", "granted", "withdrawn", "v1"),
    ]
    assert stored is not None
    assert (stored.service_consent, stored.research_consent) == (True, False)
    assert stored.consent_text_version == "v1"
    assert [event for event, _, _ in audited] == ["consent.changed"] * 3
    assert all(subject == "a" * 64 for _, subject, _ in audited)
    assert '"new":"withdrawn","old":"granted"' in audited[2][2]


async def test_consent_events_cannot_be_updated(sessionmaker: Sessions) -> None:
    """Changing a stored consent event through the ORM is refused."""
    async with sessionmaker.begin() as session:
        user = await get_or_create_user(session, "a" * 64, "fr")
        await _consent(session, user, "service", "granted")
    async with sessionmaker() as session:
        event = (await session.execute(select(ConsentEvent))).scalar_one()
        event.new_value = "declined"
        with pytest.raises(StorageError, match="append-only"):
            await session.flush()


async def test_consent_rejects_unknown_values(sessionmaker: Sessions) -> None:
    """An unknown scope is refused before anything is written."""
    async with sessionmaker.begin() as session:
        user = await get_or_create_user(session, "a" * 64, "fr")
        with pytest.raises(ValueError, match="scope"):
            await _consent(session, user, "marketing", "granted")


async def test_non_research_question_keeps_no_text_anywhere(sessionmaker: Sessions) -> None:
    """Without research consent no column of any table holds the question or answer text."""
    question_text = f"fever and stiff neck {uuid.uuid4().hex}"
    answer_text = f"refer to hospital now {uuid.uuid4().hex}"
    async with sessionmaker.begin() as session:
        user = await get_or_create_user(session, "a" * 64, "fr")
        question = await _question(session, user, question_text, research=False)
        await _answer(session, question.id, answer_text)
    async with sessionmaker.begin() as session:
        stored = await session.get(Question, question.id)
        answer = (await session.execute(select(Answer))).scalar_one()
        values = await _all_values(session)
    assert stored is not None
    assert (stored.text, stored.text_sha256, stored.text_chars) == (None, None, len(question_text))
    assert (answer.text, answer.text_sha256) == (None, None)
    for secret in (question_text, answer_text, _sha(question_text), _sha(answer_text)):
        assert not [v for v in values if isinstance(v, str) and secret in v]
    assert any(isinstance(v, str) and '"research":false' in v for v in values)


async def test_research_question_and_answer_keep_text(sessionmaker: Sessions) -> None:
    """With research consent the texts and their hashes are stored and audited by hash only."""
    question_text, answer_text = "Dose of amoxicillin for a 12 kg child?", "Ask a clinician."
    async with sessionmaker.begin() as session:
        user = await get_or_create_user(session, "a" * 64, "fr")
        question = await _question(session, user, question_text, research=True)
        await _answer(session, question.id, answer_text)
    async with sessionmaker.begin() as session:
        stored = await session.get(Question, question.id)
        answer = (await session.execute(select(Answer))).scalar_one()
        payloads = list((await session.execute(select(AuditEvent.payload))).scalars())
    assert stored is not None
    assert (stored.text, stored.text_sha256) == (question_text, _sha(question_text))
    assert (answer.text, answer.text_sha256) == (answer_text, _sha(answer_text))
    assert stored.status == "answered"
    assert not [p for p in payloads if question_text in p or answer_text in p]
    assert any(_sha(question_text) in p for p in payloads)
    assert any(_sha(answer_text) in p for p in payloads)


async def test_undelivered_answer_fails_the_question(sessionmaker: Sessions) -> None:
    """An ok answer that could not be sent (sent_at None) leaves the question failed."""
    async with sessionmaker.begin() as session:
        user = await get_or_create_user(session, "a" * 64, "fr")
        question = await _question(session, user, "q", research=False)
        answer = await _answer(session, question.id, "a", sent_at=None)
    async with sessionmaker.begin() as session:
        stored = await session.get(Question, question.id)
        payload = await session.execute(select(AuditEvent.payload).order_by(AuditEvent.id.desc()))
        last_payload = payload.scalars().first()
    assert answer.sent_at is None
    assert stored is not None
    assert stored.status == "failed"
    assert last_payload is not None
    assert '"delivered":false' in last_payload


async def test_question_lifecycle_and_count(sessionmaker: Sessions) -> None:
    """mark_enqueued stores an aware time, statuses change, unknown ids and statuses fail."""
    async with sessionmaker.begin() as session:
        user = await get_or_create_user(session, "a" * 64, None)
        first = await _question(session, user, "q1", research=False)
        await _question(session, user, "q2", research=True)
        await mark_enqueued(session, first.id, T0)
        await set_question_status(session, first.id, "cancelled")
        with pytest.raises(ValueError, match="status"):
            await set_question_status(session, first.id, "lost")
        with pytest.raises(StorageError, match="no question"):
            await mark_enqueued(session, "0" * 32)
    async with sessionmaker.begin() as session:
        stored = await session.get(Question, first.id)
        total = await count_questions(session)
    assert stored is not None
    assert (stored.status, stored.enqueued_at) == ("cancelled", T0)
    assert total == 2
