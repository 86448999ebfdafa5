"""The ``users`` table: a Telegram user, known only by the HMAC pseudonym of their id."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Integer, String, false
from sqlalchemy.orm import Mapped, mapped_column

from storage.models.base import Base, utcnow


class User(Base):
    """A Telegram user, known only by the HMAC pseudonym of their id."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    pseudonym: Mapped[str] = mapped_column(String(64), unique=True)
    language: Mapped[str | None] = mapped_column(String(8))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    service_consent: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    research_consent: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    consent_text_version: Mapped[str | None] = mapped_column(String(32))
    erased_at: Mapped[datetime | None]
