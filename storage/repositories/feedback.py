"""Answer feedback: ratings, one-line reasons (research consent only) and their counts."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import RATINGS, Feedback, Question, User, utcnow
from storage.models.base import check_one_of

MAX_REASON_CHARS = 300


async def asker_of(session: AsyncSession, question_id: str) -> tuple[str, bool] | None:
    """The asking user's pseudonym and research flag of a question, or None if unknown."""
    query = select(User.pseudonym, Question.research).join(User, Question.user_id == User.id)
    row = (await session.execute(query.where(Question.id == question_id))).first()
    return (row[0], bool(row[1])) if row else None


async def _feedback_of(session: AsyncSession, question_id: str) -> Feedback | None:
    """The feedback on a question's answer, or None."""
    query = select(Feedback).where(Feedback.question_id == question_id)
    return (await session.execute(query)).scalar_one_or_none()


async def record_feedback(session: AsyncSession, question_id: str, rating: str) -> Feedback:
    """Store (or change) the rating of an answer."""
    check_one_of("rating", rating, RATINGS)
    feedback = await _feedback_of(session, question_id)
    if feedback is None:
        feedback = Feedback(question_id=question_id, rating=rating)
        session.add(feedback)
    else:
        feedback.rating, feedback.updated_at = rating, utcnow()
    await session.flush()
    return feedback


async def record_reason(session: AsyncSession, question_id: str, reason: str) -> bool:
    """Attach a one-line reason to a 👎; stored only with research consent. True if stored."""
    asker = await asker_of(session, question_id)
    feedback = await _feedback_of(session, question_id)
    if asker is None or feedback is None or not asker[1]:
        return False
    feedback.reason = " ".join(reason.split())[:MAX_REASON_CHARS]
    feedback.updated_at = utcnow()
    await session.flush()
    return True


async def feedback_counts(session: AsyncSession, since: datetime | None = None) -> dict[str, int]:
    """How many 👍 and 👎 were given, on answers to questions received since ``since`` if given."""
    query = select(Feedback.rating, func.count()).group_by(Feedback.rating)
    if since is not None:
        query = query.join(Question, Question.id == Feedback.question_id).where(Question.received_at >= since)
    counts = dict.fromkeys(RATINGS, 0)
    counts.update({str(rating): int(count) for rating, count in (await session.execute(query)).tuples()})
    return counts
