"""Retention: texts older than RETENTION_DAYS are erased by the daily job; newer ones stay."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from telegram.ext import ApplicationBuilder

from bot.jobs.retention import INTERVAL, JOB_NAME, schedule_retention
from storage.models import Question
from storage.repositories.audit import verify_chain
from storage.repositories.erasure import tombstones
from storage.retention import erase_expired
from tests.test_consent_storage import seed, texts_of

Sessions = async_sessionmaker[AsyncSession]


async def test_expired_texts_are_erased_with_tombstones(sessionmaker: Sessions) -> None:
    """Questions past the period lose their texts (tombstone "retention"); recent ones keep them."""
    await seed(sessionmaker, "o" * 64, questions=2, age_days=200)
    await seed(sessionmaker, "n" * 64, questions=1, age_days=10)
    assert await erase_expired(sessionmaker, 180) == 2
    assert await erase_expired(sessionmaker, 180) == 0
    async with sessionmaker.begin() as session:
        kept = [t for t in await texts_of(session) if t is not None]
        stones = await tombstones(session)
        statuses = list(
            (await session.execute(select(Question.erased_at).order_by(Question.received_at))).scalars()
        )
        assert await verify_chain(session) > 0
    assert sorted(kept) == ["answer 0 text", "question 0 text", "reason 0"]
    assert [s.reason for s in stones] == ["retention", "retention"]
    assert [s is not None for s in statuses] == [True, True, False]


async def test_daily_job_on_the_job_queue_erases(sessionmaker: Sessions) -> None:
    """The job is scheduled daily on PTB's JobQueue and, when run, erases expired texts."""
    await seed(sessionmaker, questions=1, age_days=400)
    application = ApplicationBuilder().token("1:retention-test").build()
    assert application.job_queue is not None
    job = schedule_retention(application.job_queue, sessionmaker, 180)
    assert application.job_queue.get_jobs_by_name(JOB_NAME) == (job,)
    assert job.trigger.interval == INTERVAL == timedelta(days=1)  # type: ignore[attr-defined]
    await job.run(application)
    async with sessionmaker.begin() as session:
        assert set(await texts_of(session)) == {None}
        assert [s.reason for s in await tombstones(session)] == ["retention"]
