"""The ``feedback`` table: 👍 / 👎 on one answer, with a reason only under research consent."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from storage.models.base import Base, one_of, utcnow

RATINGS = ("up", "down")


class Feedback(Base):
    """👍 / 👎 on one answer, with an optional one-line reason (research consent only)."""

    __tablename__ = "feedback"
    __table_args__ = (CheckConstraint(one_of("rating", RATINGS), name="rating"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    question_id: Mapped[str] = mapped_column(ForeignKey("questions.id"), unique=True)
    rating: Mapped[str] = mapped_column(String(8))
    reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
