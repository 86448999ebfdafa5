"""Red flags and feedback of questions, as the review pages filter, show and count them.

Feedback comes from the ``feedback`` table (``storage.models.Feedback``: rating up|down and an
optional reason; its counts are ``storage.repositories.feedback.feedback_counts``). Red flags come
from ``questions.red_flag``, the label of the danger sign the bot matched when it recorded the
question (``storage.repositories.questions.record_question``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Feedback, Question


@dataclass(frozen=True)
class Signals:
    """What is known about one question beyond its text."""

    red_flag: str | None = None
    feedback: str | None = None
    feedback_reason: str | None = None


def red_flag_condition(wanted: str) -> ColumnElement[bool]:
    """Questions with ("yes") or without ("no") a red flag."""
    return Question.red_flag.isnot(None) if wanted == "yes" else Question.red_flag.is_(None)


def feedback_condition(wanted: str) -> ColumnElement[bool]:
    """Questions whose answer got 👍 ("up"), 👎 ("down") or no feedback ("none")."""
    if wanted == "none":
        return ~Question.id.in_(select(Feedback.question_id))
    return Question.id.in_(select(Feedback.question_id).where(Feedback.rating == wanted))


async def signals_of(session: AsyncSession, questions: list[Question]) -> dict[str, Signals]:
    """Red flag and feedback of each of ``questions``, by question id."""
    if not questions:
        return {}
    ids = [question.id for question in questions]
    feedback_query = select(Feedback).where(Feedback.question_id.in_(ids))
    feedback = {row.question_id: row for row in (await session.execute(feedback_query)).scalars()}
    result = {}
    for question in questions:
        given = feedback.get(question.id)
        result[question.id] = Signals(
            red_flag=question.red_flag,
            feedback=given.rating if given else None,
            feedback_reason=given.reason if given else None,
        )
    return result


async def red_flag_counts(session: AsyncSession, since: datetime) -> list[tuple[str, int]]:
    """Questions with a red flag received since ``since``, per rule label, most frequent first."""
    count = func.count().label("count")
    query = (
        select(Question.red_flag, count)
        .where(Question.red_flag.isnot(None), Question.received_at >= since)
        .group_by(Question.red_flag)
        .order_by(count.desc(), Question.red_flag)
    )
    return [(str(rule), int(number)) for rule, number in (await session.execute(query)).tuples()]
