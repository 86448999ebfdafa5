"""Erasure: free text and identifiers are deleted, a tombstone row says what, when and why.

Question text (and the library passages retrieved for it), answer text, feedback reasons and
handover case texts are set to NULL; counts, timings and text hashes stay, so statistics and the
audit chain (which holds only hashes) remain whole. Every erasure appends one ``data.erased`` audit
event. Tombstones are append-only (on PostgreSQL the application role may not change them, see
migration 0003).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import (
    ERASURE_REASONS,
    AccessGrant,
    Answer,
    Feedback,
    GroupChat,
    Question,
    Tombstone,
    User,
    utcnow,
)
from storage.models.base import check_one_of
from storage.repositories.audit import append_audit
from storage.repositories.cases import erase_case_texts

ERASED_MARK = "erased"


@dataclass(frozen=True)
class ErasureResult:
    """How many questions lost their text and how many characters were erased."""

    questions: int
    chars: int


async def _answers_and_feedback(
    session: AsyncSession, ids: list[str]
) -> tuple[dict[str, Answer], dict[str, Feedback]]:
    """The answers and feedback of these questions, by question id."""
    answers = (await session.execute(select(Answer).where(Answer.question_id.in_(ids)))).scalars()
    feedback = (await session.execute(select(Feedback).where(Feedback.question_id.in_(ids)))).scalars()
    return {a.question_id: a for a in answers}, {f.question_id: f for f in feedback}


def _wipe(question: Question, answer: Answer | None, feedback: Feedback | None) -> tuple[list[str], int]:
    """Set the free text of one question, its answer and feedback to NULL; say what had text."""
    fields, chars = [], 0
    for name, row in (("questions.text", question), ("answers.text", answer), ("feedback.reason", feedback)):
        value = getattr(row, "reason" if name == "feedback.reason" else "text", None) if row else None
        if value is not None:
            fields.append(name)
            chars += len(value)
    question.text = None
    question.passage_ids = None  # they say what the question was about
    if answer is not None:
        answer.text = None
    if feedback is not None:
        feedback.reason = None
    return fields, chars


async def erase_questions(
    session: AsyncSession, questions: Sequence[Question], reason: str, *, stop_research: bool = False
) -> ErasureResult:
    """Erase the free text of ``questions`` (a tombstone each) and audit it in one event.

    ``stop_research`` also clears the research flag, so an answer still on its way is not stored.
    """
    check_one_of("reason", reason, ERASURE_REASONS)
    if not questions:
        return ErasureResult(0, 0)
    answers, feedback = await _answers_and_feedback(session, [q.id for q in questions])
    now, total = utcnow(), 0
    for question in questions:
        fields, chars = _wipe(question, answers.get(question.id), feedback.get(question.id))
        question.erased_at = now
        question.research = question.research and not stop_research
        total += chars
        what = ",".join(fields) or "-"
        ref, user_id = question.id, question.user_id
        session.add(
            Tombstone(
                erased_at=now,
                reason=reason,
                kind="question",
                ref=ref,
                user_id=user_id,
                fields=what,
                chars=chars,
            )
        )
    await session.flush()
    await append_audit(
        session, "data.erased", None, {"chars": total, "questions": len(questions), "reason": reason}
    )
    return ErasureResult(len(questions), total)


async def _unerased_questions(session: AsyncSession, user: User) -> list[Question]:
    """The user's questions whose text has not been erased yet."""
    query = select(Question).where(Question.user_id == user.id, Question.erased_at.is_(None))
    return list((await session.execute(query.order_by(Question.received_at))).scalars())


async def erase_research_text(session: AsyncSession, user: User, reason: str = "withdrawal") -> ErasureResult:
    """Erase the text of every question, answer and feedback of ``user`` (research withdrawn)."""
    await session.flush()
    await erase_case_texts(session, user.id, reason, all_cases=False)  # open cases close without research
    questions = [q for q in await _unerased_questions(session, user) if q.research]
    return await erase_questions(session, questions, reason, stop_research=True)


async def forget_user(session: AsyncSession, user: User) -> ErasureResult:
    """Erase everything about ``user``: texts, chat pseudonyms, language, access and pseudonym.

    The user row stays (with a random pseudonym) so consent history and counts remain; the same
    Telegram user writing again is a new user. Consent changes must be recorded before this.
    """
    await session.flush()
    await erase_case_texts(session, user.id, "forget", all_cases=True)
    result = await erase_questions(
        session, await _unerased_questions(session, user), "forget", stop_research=True
    )
    old = user.pseudonym
    await session.execute(
        update(Question).where(Question.user_id == user.id).values(chat_pseudonym=ERASED_MARK, research=False)
    )
    await session.execute(delete(AccessGrant).where(AccessGrant.pseudonym == old))
    await session.execute(update(GroupChat).where(GroupChat.changed_by == old).values(changed_by=ERASED_MARK))
    user.pseudonym = f"{ERASED_MARK}-{secrets.token_hex(28)}"
    user.language, user.erased_at = None, utcnow()
    user.service_consent = user.research_consent = False
    fields = "users.pseudonym,users.language,questions.chat_pseudonym,access_grants"
    session.add(
        Tombstone(reason="forget", kind="user", ref=str(user.id), user_id=user.id, fields=fields, chars=0)
    )
    await session.flush()
    await append_audit(session, "data.erased", None, {"reason": "forget", "user_id": user.id})
    return result


async def tombstones(session: AsyncSession, user_id: int | None = None) -> list[Tombstone]:
    """Every tombstone (of one user, if given), oldest first."""
    query = select(Tombstone).order_by(Tombstone.id)
    if user_id is not None:
        query = query.where(Tombstone.user_id == user_id)
    return list((await session.execute(query)).scalars())
