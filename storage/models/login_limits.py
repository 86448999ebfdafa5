"""The ``login_limits`` table: review-console login attempts per client, shared by console processes."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from storage.models.base import Base


class LoginLimit(Base):
    """Attempts of one client (sha256 of its address, never the address) in its current window."""

    __tablename__ = "login_limits"

    client_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    window_start: Mapped[datetime] = mapped_column(index=True)
    attempts: Mapped[int] = mapped_column(Integer)
