"""The ``erasures`` table: tombstones saying what was erased, when and why (append-only)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from storage.models.base import Base, one_of, utcnow

ERASURE_REASONS = ("withdrawal", "forget", "retention")
ERASURE_KINDS = ("question", "user", "case")


class Tombstone(Base):
    """What was erased (kind, reference, fields), when and why; never updated."""

    __tablename__ = "erasures"
    __table_args__ = (
        CheckConstraint(one_of("reason", ERASURE_REASONS), name="reason"),
        CheckConstraint(one_of("kind", ERASURE_KINDS), name="kind"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    erased_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    reason: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(16))
    ref: Mapped[str] = mapped_column(String(64), index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    fields: Mapped[str] = mapped_column(String(255))
    chars: Mapped[int] = mapped_column(Integer, default=0)
