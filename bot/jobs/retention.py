"""The daily retention job: erase question and answer texts older than RETENTION_DAYS (in one bot
process per day: a lease)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from telegram.ext import ContextTypes, Job, JobQueue

from bot.jobs.lease import Leases, run_leased
from storage.retention import erase_expired

log = structlog.get_logger("bot.retention")

JOB_NAME = "retention"
INTERVAL = timedelta(days=1)
FIRST_RUN = timedelta(minutes=1)


@dataclass(frozen=True)
class RetentionConfig:
    """What the job needs: the database, the retention period and the deployment's leases."""

    sessionmaker: async_sessionmaker[AsyncSession]
    retention_days: int
    leases: Leases | None = None


async def retention_job(context: ContextTypes.DEFAULT_TYPE) -> None:
    """Erase expired texts (tombstones stay) and log how many."""
    assert context.job is not None
    config = context.job.data
    assert isinstance(config, RetentionConfig)

    async def erase() -> None:
        erased = await erase_expired(config.sessionmaker, config.retention_days)
        log.info("retention.done", erased=erased, retention_days=config.retention_days)

    await run_leased(config.leases, JOB_NAME, INTERVAL.total_seconds(), erase)


def schedule_retention(
    job_queue: JobQueue[Any],
    sessionmaker: async_sessionmaker[AsyncSession],
    retention_days: int,
    first: timedelta = FIRST_RUN,
    *,
    leases: Leases | None = None,
) -> Job[Any]:
    """Run the retention job once a day, the first time shortly after start-up."""
    return job_queue.run_repeating(
        retention_job,
        interval=INTERVAL,
        first=first,
        name=JOB_NAME,
        data=RetentionConfig(sessionmaker, retention_days, leases),
    )
