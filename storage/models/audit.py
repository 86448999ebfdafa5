"""The ``audit_events`` table: the append-only, hash-chained audit log."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String, Text, event
from sqlalchemy.orm import Mapped, mapped_column

from storage.models.base import Base, refuse_update


class AuditEvent(Base):
    """One link of the append-only audit chain: ``hash = sha256(prev_hash + row content)``."""

    __tablename__ = "audit_events"
    __table_args__ = {"sqlite_autoincrement": True}  # noqa: RUF012  ids are never reused

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime]
    event: Mapped[str] = mapped_column(String(32), index=True)
    subject: Mapped[str | None] = mapped_column(String(64), index=True)
    payload: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64), unique=True)
    hash: Mapped[str] = mapped_column(String(64), unique=True)


event.listen(AuditEvent, "before_update", refuse_update)
