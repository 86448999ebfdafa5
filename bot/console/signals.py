"""Red flags and feedback, as the review pages filter, show and count them.

Feedback comes from the ``feedback`` table (``storage.field.Feedback``: rating up|down and an
optional reason). Red flags come from audit events ``question.red_flag`` whose subject is the
question id and whose payload names the matched ``rule`` (the bot appends one per match).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.field import Feedback
from storage.models import AuditEvent, Question

RED_FLAG_EVENT = "question.red_flag"


@dataclass(frozen=True)
class Signals:
    """What is known about one question beyond its text."""

    red_flag: str | None = None
    feedback: str | None = None
    feedback_reason: str | None = None


def _flagged_ids() -> Select[tuple[str | None]]:
    """Ids of questions with a red-flag event."""
    return select(AuditEvent.subject).where(AuditEvent.event == RED_FLAG_EVENT)


def red_flag_condition(wanted: str) -> ColumnElement[bool]:
    """Questions with ("yes") or without ("no") a red flag."""
    flagged = Question.id.in_(_flagged_ids())
    return flagged if wanted == "yes" else ~flagged


def feedback_condition(wanted: str) -> ColumnElement[bool]:
    """Questions whose answer got 👍 ("up"), 👎 ("down") or no feedback ("none")."""
    if wanted == "none":
        return ~Question.id.in_(select(Feedback.question_id))
    return Question.id.in_(select(Feedback.question_id).where(Feedback.rating == wanted))


def _rule(payload: str) -> str:
    """The rule named in a red-flag event's payload."""
    try:
        value = json.loads(payload).get("rule")
    except (ValueError, AttributeError):
        return "?"
    return str(value) if value else "?"


async def signals_of(session: AsyncSession, question_ids: list[str]) -> dict[str, Signals]:
    """Red flag and feedback of each of ``question_ids`` (absent ids: nothing known)."""
    if not question_ids:
        return {}
    flags_query = select(AuditEvent.subject, AuditEvent.payload).where(
        AuditEvent.event == RED_FLAG_EVENT, AuditEvent.subject.in_(question_ids)
    )
    flags = {
        str(subject): _rule(payload) for subject, payload in (await session.execute(flags_query)).tuples()
    }
    feedback_query = select(Feedback).where(Feedback.question_id.in_(question_ids))
    feedback = {row.question_id: row for row in (await session.execute(feedback_query)).scalars()}
    result = {}
    for question_id in question_ids:
        given = feedback.get(question_id)
        result[question_id] = Signals(
            red_flag=flags.get(question_id),
            feedback=given.rating if given else None,
            feedback_reason=given.reason if given else None,
        )
    return result


async def feedback_counts(session: AsyncSession, since: datetime) -> dict[str, int]:
    """👍 and 👎 on answers to questions received since ``since``."""
    query = (
        select(Feedback.rating, func.count())
        .join(Question, Question.id == Feedback.question_id)
        .where(Question.received_at >= since)
        .group_by(Feedback.rating)
    )
    counts = {"up": 0, "down": 0}
    counts.update({str(rating): int(count) for rating, count in (await session.execute(query)).tuples()})
    return counts


async def red_flag_counts(session: AsyncSession, since: datetime) -> list[tuple[str, int]]:
    """Red-flag matches per rule since ``since``, most frequent first."""
    query = select(AuditEvent.payload).where(
        AuditEvent.event == RED_FLAG_EVENT, AuditEvent.created_at >= since
    )
    counts = Counter(_rule(payload) for payload in (await session.execute(query)).scalars())
    return counts.most_common()
