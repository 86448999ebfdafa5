"""Statistics for the statistics page: counts, answer-time percentiles, feedback and red flags."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.console.queries import day_start
from storage.models import Answer, Question, User, utcnow
from storage.repositories.feedback import feedback_counts
from storage.repositories.signals import red_flag_counts

DAYS = 30
PERCENTILES = (50, 90, 99)
TIME_BUCKETS = (5.0, 10.0, 20.0, 40.0, 80.0, 160.0)


def percentile(values: list[float], p: int) -> float | None:
    """The nearest-rank ``p``-th percentile of ``values`` (None when empty)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def bucket_label(index: int) -> str:
    """The label of time bucket ``index`` ("<5 s", "5-10 s", ..., "≥160 s")."""
    if index == 0:
        return f"<{TIME_BUCKETS[0]:g} s"
    if index == len(TIME_BUCKETS):
        return f"≥{TIME_BUCKETS[-1]:g} s"
    return f"{TIME_BUCKETS[index - 1]:g}-{TIME_BUCKETS[index]:g} s"


def histogram(values: list[float]) -> list[tuple[str, int]]:
    """How many values fall in each time bucket."""
    counts = [0] * (len(TIME_BUCKETS) + 1)
    for value in values:
        counts[sum(1 for edge in TIME_BUCKETS if value >= edge)] += 1
    return [(bucket_label(index), count) for index, count in enumerate(counts)]


@dataclass(frozen=True)
class Timing:
    """Percentiles of one answer-time measure, in seconds."""

    name: str
    values: tuple[float | None, ...]


@dataclass(frozen=True)
class Stats:
    """Everything the statistics page shows."""

    since: datetime
    per_day: list[tuple[date, int]]
    statuses: dict[str, int]
    timings: list[Timing]
    time_histogram: list[tuple[str, int]]
    consent: dict[str, int]
    feedback: dict[str, int]
    red_flags: list[tuple[str, int]]


async def _per_day(session: AsyncSession, since: datetime, today: date) -> list[tuple[date, int]]:
    """Questions received per day from ``since`` to ``today`` (all users: counts only)."""
    query = select(Question.received_at).where(Question.received_at >= since)
    counts = Counter(value.date() for value in (await session.execute(query)).scalars())
    days = [since.date() + timedelta(days=offset) for offset in range((today - since.date()).days + 1)]
    return [(day, counts.get(day, 0)) for day in days]


async def _statuses(session: AsyncSession, since: datetime) -> dict[str, int]:
    """Questions per status since ``since``."""
    query = (
        select(Question.status, func.count()).where(Question.received_at >= since).group_by(Question.status)
    )
    return {str(status): int(count) for status, count in (await session.execute(query)).tuples()}


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    """Seconds between two times, or None."""
    return (end - start).total_seconds() if start and end else None


async def _timings(session: AsyncSession, since: datetime) -> tuple[list[Timing], list[float]]:
    """Percentiles of wait, first token, generation and total time; and the totals."""
    query = (
        select(Question.received_at, Answer.taken_at, Answer.first_token_at, Answer.finished_at)
        .join(Answer, Answer.question_id == Question.id)
        .where(Question.received_at >= since, Answer.status == "ok")
    )
    measures: dict[str, list[float]] = {"wait": [], "first token": [], "generation": [], "total": []}
    for received, taken, first, finished in (await session.execute(query)).tuples():
        pairs = {
            "wait": (received, taken),
            "first token": (taken, first),
            "generation": (first or taken, finished),
            "total": (received, finished),
        }
        for name, (start, end) in pairs.items():
            value = _seconds(start, end)
            if value is not None:
                measures[name].append(value)
    timings = [Timing(name, tuple(percentile(v, p) for p in PERCENTILES)) for name, v in measures.items()]
    return timings, measures["total"]


async def _consent(session: AsyncSession) -> dict[str, int]:
    """Users in all, with service consent, with research consent (current state)."""
    query = select(
        func.count(),
        func.count().filter(User.service_consent.is_(True)),
        func.count().filter(User.research_consent.is_(True)),
    ).where(User.erased_at.is_(None))
    total, service, research = (await session.execute(query)).one()
    return {"users": int(total), "service": int(service), "research": int(research)}


async def collect(session: AsyncSession, now: datetime | None = None) -> Stats:
    """The statistics of the last ``DAYS`` days."""
    now = now or utcnow()
    since = day_start(now.date() - timedelta(days=DAYS - 1))
    timings, totals = await _timings(session, since)
    return Stats(
        since=since,
        per_day=await _per_day(session, since, now.date()),
        statuses=await _statuses(session, since),
        timings=timings,
        time_histogram=histogram(totals),
        consent=await _consent(session),
        feedback=await feedback_counts(session, since),
        red_flags=await red_flag_counts(session, since),
    )
