"""The ``cases`` table: a question handed over to a clinician of the study team, with its consent.

A case opens only after its asker agreed (a ``clinician`` consent event for that question). Its
question and answer texts, and the earlier turns of its conversation (``earlier_turns``: a JSON
list of ``{"turn", "question", "answer"}``, oldest first), are copies the clinician reads; once the
case closes, they and the reply are kept only with research consent (like answer texts), hashes always.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from storage.models.base import Base, one_of, utcnow

CASE_STATUSES = ("open", "claimed", "replied", "closed")
CASE_OUTCOMES = ("delivered", "undeliverable", "erased")


class Case(Base):
    """One handed-over question: open → claimed → replied → closed (with an outcome)."""

    __tablename__ = "cases"
    __table_args__ = (
        CheckConstraint(one_of("status", CASE_STATUSES), name="status"),
        CheckConstraint(f"outcome IS NULL OR {one_of('outcome', CASE_OUTCOMES)}", name="outcome"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    question_id: Mapped[str] = mapped_column(ForeignKey("questions.id"), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    consent_id: Mapped[int] = mapped_column(ForeignKey("consent_events.id"))
    language: Mapped[str] = mapped_column(String(8))
    danger: Mapped[bool] = mapped_column(Boolean)
    status: Mapped[str] = mapped_column(String(16), index=True)
    outcome: Mapped[str | None] = mapped_column(String(16))
    question_text: Mapped[str | None] = mapped_column(Text)
    answer_text: Mapped[str | None] = mapped_column(Text)
    earlier_turns: Mapped[str | None] = mapped_column(Text)  # JSON; None: a first question, or erased
    reply_text: Mapped[str | None] = mapped_column(Text)
    reply_sha256: Mapped[str | None] = mapped_column(String(64))
    claimed_by: Mapped[int | None] = mapped_column(ForeignKey("review_accounts.id"))
    rating: Mapped[str | None] = mapped_column(String(8))
    opened_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    claimed_at: Mapped[datetime | None]
    replied_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]
    overdue_at: Mapped[datetime | None]  # when the on-call chat and the user were told it is waiting
    erased_at: Mapped[datetime | None]
