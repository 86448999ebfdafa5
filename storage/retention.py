"""Retention: question, answer and case texts older than the retention period are erased (tombstones kept)."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage.models import Question, utcnow
from storage.repositories.cases import erase_expired_cases
from storage.repositories.erasure import erase_questions

DEFAULT_RETENTION_DAYS = 180
BATCH_SIZE = 500


def retention_cutoff(retention_days: int, now: datetime | None = None) -> datetime:
    """The moment before which questions are past their retention period."""
    if retention_days < 1:
        raise ValueError("retention_days must be at least 1")
    return (now or utcnow()) - timedelta(days=retention_days)


async def erase_expired_batch(session: AsyncSession, cutoff: datetime, limit: int = BATCH_SIZE) -> int:
    """Erase up to ``limit`` research questions received before ``cutoff``; return how many."""
    query = (
        select(Question)
        .where(Question.received_at < cutoff, Question.erased_at.is_(None), Question.research.is_(True))
        .order_by(Question.received_at)
        .limit(limit)
    )
    questions = list((await session.execute(query)).scalars())
    result = await erase_questions(session, questions, "retention")
    await erase_expired_cases(session, cutoff)  # a handover case's kept texts expire with it
    return result.questions


async def erase_expired(
    sessionmaker: async_sessionmaker[AsyncSession], retention_days: int, now: datetime | None = None
) -> int:
    """Erase every expired question, one short transaction per batch; return how many."""
    cutoff, total = retention_cutoff(retention_days, now), 0
    while True:
        async with sessionmaker.begin() as session:
            erased = await erase_expired_batch(session, cutoff)
        total += erased
        if erased < BATCH_SIZE:
            return total
