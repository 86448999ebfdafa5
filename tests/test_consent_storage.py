"""Erasure in storage: withdrawal and forgetting delete free text, keep tombstones, counts and the chain."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage.models import AccessGrant, Answer, Feedback, Question, User, utcnow
from storage.repositories.audit import verify_chain
from storage.repositories.consent import consent_history, latest_consents, record_consent
from storage.repositories.erasure import erase_research_text, forget_user, tombstones
from storage.repositories.feedback import record_feedback, record_reason
from storage.repositories.questions import record_answer, record_question
from storage.repositories.users import get_or_create_user, get_user

Sessions = async_sessionmaker[AsyncSession]
PSEUDONYM = "a" * 64


async def consent(session: AsyncSession, user: User, scope: str, value: str, version: str = "en-1") -> None:
    """Record one consent change from a button."""
    await record_consent(session, user, scope=scope, new_value=value, text_version=version,
                         text_sha256="c" * 64, language="en", source="button")  # fmt: skip


async def ask(
    session: AsyncSession, user: User, number: int, received_at: datetime, *, research: bool
) -> str:
    """A question with its answer and a 👎 with a reason; returns the question id."""
    qid = f"{user.pseudonym[:4]}{number:028d}"
    await record_question(session, question_id=qid, user=user, chat_pseudonym="c" * 64, chat_type="private",
                          language="en", text=f"question {number} text", research=research,
                          received_at=received_at)  # fmt: skip
    await record_answer(session, question_id=qid, text=f"answer {number} text", status="ok",
                        model_sha256="m" * 64, prompt_version="1", prompt_tokens=10, completion_tokens=5,
                        taken_at=received_at,
                        first_token_at=received_at, finished_at=received_at, sent_at=received_at,
                        worker="w", stop_reason="eos")  # fmt: skip
    await record_feedback(session, qid, "down")
    await record_reason(session, qid, f"reason {number}")
    return qid


async def seed(
    sessionmaker: Sessions, pseudonym: str = PSEUDONYM, *, questions: int = 3, age_days: int = 0
) -> int:
    """A research-consenting user with ``questions`` answered, rated questions; returns the user id."""
    async with sessionmaker.begin() as session:
        user = await get_or_create_user(session, pseudonym, "en")
        await consent(session, user, "service", "granted")
        await consent(session, user, "research", "granted")
        for number in range(questions):
            await ask(session, user, number, utcnow() - timedelta(days=age_days), research=True)
        return user.id


async def texts_of(session: AsyncSession) -> list[str | None]:
    """Every free-text value of questions, answers and feedback."""
    values = list((await session.execute(select(Question.text))).scalars())
    values += list((await session.execute(select(Answer.text))).scalars())
    values += list((await session.execute(select(Feedback.reason))).scalars())
    return values


async def test_withdrawal_erases_text_and_leaves_tombstones(sessionmaker: Sessions) -> None:
    """Withdrawal: no question, answer or feedback text left; a tombstone per question; chain whole."""
    user_id = await seed(sessionmaker)
    async with sessionmaker.begin() as session:
        assert "question 0 text" in await texts_of(session)
        user = await session.get(User, user_id)
        assert user is not None
        await consent(session, user, "research", "withdrawn")
        result = await erase_research_text(session, user)
    async with sessionmaker.begin() as session:
        assert result.questions == 3 and result.chars > 0
        assert set(await texts_of(session)) == {None}
        stones = await tombstones(session, user_id)
        assert [(s.kind, s.reason) for s in stones] == [("question", "withdrawal")] * 3
        assert stones[0].fields == "questions.text,answers.text,feedback.reason"
        assert (await session.execute(select(func.count()).select_from(Question))).scalar_one() == 3
        assert all(q.erased_at is not None for q in (await session.execute(select(Question))).scalars())
        assert await verify_chain(session) > 0
        assert "data.erased" in await _events(session)


async def test_forget_removes_identifiers_and_keeps_consent_history(sessionmaker: Sessions) -> None:
    """Forgetting: texts, pseudonym, language, chat pseudonyms and access grant gone; history stays."""
    user_id = await seed(sessionmaker)
    async with sessionmaker.begin() as session:
        session.add(AccessGrant(pseudonym=PSEUDONYM, source="invite"))
        user = await session.get(User, user_id)
        assert user is not None
        await consent(session, user, "service", "withdrawn")
        await consent(session, user, "research", "withdrawn")
        await forget_user(session, user)
    async with sessionmaker.begin() as session:
        assert await get_user(session, PSEUDONYM) is None
        user = await session.get(User, user_id)
        assert user is not None and user.erased_at is not None and user.language is None
        assert not user.service_consent and not user.research_consent
        assert set(await texts_of(session)) == {None}
        assert set((await session.execute(select(Question.chat_pseudonym))).scalars()) == {"erased"}
        assert (await session.execute(select(func.count()).select_from(AccessGrant))).scalar_one() == 0
        assert [s.kind for s in await tombstones(session, user_id)] == ["question"] * 3 + ["user"]
        assert len(await consent_history(session, user_id)) == 4
        assert (await latest_consents(session, user_id))["service"].new_value == "withdrawn"
        assert await verify_chain(session) > 0


async def test_service_only_questions_have_nothing_to_erase(sessionmaker: Sessions) -> None:
    """Without research consent nothing was stored, so withdrawal erases nothing."""
    async with sessionmaker.begin() as session:
        user = await get_or_create_user(session, PSEUDONYM, "en")
        await consent(session, user, "service", "granted")
        await ask(session, user, 1, utcnow(), research=False)
        assert set(await texts_of(session)) == {None}
        result = await erase_research_text(session, user)
    assert result.questions == 0


async def _events(session: AsyncSession) -> list[str]:
    """The audit events' names, oldest first."""
    from storage.models import AuditEvent

    return list((await session.execute(select(AuditEvent.event).order_by(AuditEvent.id))).scalars())
