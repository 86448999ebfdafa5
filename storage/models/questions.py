"""The ``questions`` and ``answers`` tables; free text is kept only with research consent."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from storage.models.base import Base, one_of

QUESTION_STATUSES = ("queued", "answered", "cancelled", "failed")
ANSWER_STATUSES = ("ok", "failed")


class Question(Base):
    """A question; its text (and text hash) is kept only when ``research`` is true.

    ``red_flag`` is the label (``language:rule``) of the danger sign it matched, never text.
    ``passage_ids`` name the guideline passages retrieved for it (what its answer rests on).
    """

    __tablename__ = "questions"
    __table_args__ = (CheckConstraint(one_of("status", QUESTION_STATUSES), name="status"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    chat_pseudonym: Mapped[str] = mapped_column(String(64))
    chat_type: Mapped[str] = mapped_column(String(16))
    language: Mapped[str | None] = mapped_column(String(8))
    text: Mapped[str | None] = mapped_column(Text)
    text_sha256: Mapped[str | None] = mapped_column(String(64))
    text_chars: Mapped[int] = mapped_column(Integer)
    research: Mapped[bool] = mapped_column(Boolean)
    received_at: Mapped[datetime]
    enqueued_at: Mapped[datetime | None]
    status: Mapped[str] = mapped_column(String(16), index=True)
    erased_at: Mapped[datetime | None]
    red_flag: Mapped[str | None] = mapped_column(String(32))
    # The library passages retrieved for it ("12,40,7"; erased with the text) and the library's
    # version (None: there was no library).
    passage_ids: Mapped[str | None] = mapped_column(String(200))
    library_version: Mapped[str | None] = mapped_column(String(16))


class Answer(Base):
    """The answer to one question; text kept only when the question's ``research`` is true."""

    __tablename__ = "answers"
    __table_args__ = (CheckConstraint(one_of("status", ANSWER_STATUSES), name="status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    question_id: Mapped[str] = mapped_column(ForeignKey("questions.id"), unique=True)
    text: Mapped[str | None] = mapped_column(Text)
    text_sha256: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    model_sha256: Mapped[str | None] = mapped_column(String(64))
    prompt_version: Mapped[str] = mapped_column(String(32))
    prompt_tokens: Mapped[int] = mapped_column(Integer)
    completion_tokens: Mapped[int] = mapped_column(Integer)
    taken_at: Mapped[datetime]
    first_token_at: Mapped[datetime | None]
    finished_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]  # None: the answer could not be delivered
    worker: Mapped[str] = mapped_column(String(64))
    stop_reason: Mapped[str] = mapped_column(String(16))
    conversation_id: Mapped[str | None] = mapped_column(String(32), index=True)  # None: before 0006
    turn: Mapped[int | None] = mapped_column(Integer)  # 1 = the conversation's first question
