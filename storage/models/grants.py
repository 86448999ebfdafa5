"""The ``access_grants`` table: pseudonymous users let in by an invite code."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from storage.models.base import Base, one_of, utcnow

GRANT_SOURCES = ("invite",)


class AccessGrant(Base):
    """A pseudonymous user let in by an invite code (allowlisted ids live in configuration)."""

    __tablename__ = "access_grants"
    __table_args__ = (CheckConstraint(one_of("source", GRANT_SOURCES), name="source"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    pseudonym: Mapped[str] = mapped_column(String(64), unique=True)
    source: Mapped[str] = mapped_column(String(16))
    invite_id: Mapped[int | None] = mapped_column(ForeignKey("invite_codes.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
