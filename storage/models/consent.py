"""The ``consent_events`` table: one immutable row per change of one consent."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Integer, String, event
from sqlalchemy.orm import Mapped, mapped_column

from storage.models.base import Base, one_of, refuse_update, utcnow

CONSENT_SCOPES = ("service", "research", "clinician")  # clinician: one question, see cases
CONSENT_VALUES = ("granted", "declined", "withdrawn")
CONSENT_SOURCES = ("button", "command", "expiry")


class ConsentEvent(Base):
    """One change of one consent; rows are never updated."""

    __tablename__ = "consent_events"
    __table_args__ = (
        CheckConstraint(one_of("scope", CONSENT_SCOPES), name="scope"),
        CheckConstraint(one_of("new_value", CONSENT_VALUES), name="new_value"),
        CheckConstraint(one_of("source", CONSENT_SOURCES), name="source"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    scope: Mapped[str] = mapped_column(String(16))
    text_version: Mapped[str] = mapped_column(String(32))
    text_sha256: Mapped[str] = mapped_column(String(64))
    language: Mapped[str] = mapped_column(String(8))
    old_value: Mapped[str | None] = mapped_column(String(16))
    new_value: Mapped[str] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(String(16))
    question_id: Mapped[str | None] = mapped_column(String(32))  # scope "clinician": for this question
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


event.listen(ConsentEvent, "before_update", refuse_update)
