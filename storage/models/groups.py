"""The ``group_chats`` table: groups the bot is in, off until an administrator enables them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, String
from sqlalchemy.orm import Mapped, mapped_column

from storage.models.base import Base, utcnow


class GroupChat(Base):
    """A group the bot is in, known by chat pseudonym; off until an administrator enables it."""

    __tablename__ = "group_chats"

    chat_pseudonym: Mapped[str] = mapped_column(String(64), primary_key=True)
    enabled: Mapped[bool] = mapped_column(Boolean)
    changed_by: Mapped[str] = mapped_column(String(64))
    changed_at: Mapped[datetime] = mapped_column(default=utcnow)
