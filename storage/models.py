"""SQL models: users (pseudonymous), consent events, questions, answers and the audit chain."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    event,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Mapper, mapped_column

from storage.errors import StorageError

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

CONSENT_SCOPES = ("service", "research")
CONSENT_VALUES = ("granted", "declined", "withdrawn")
CONSENT_SOURCES = ("button", "command", "expiry")
QUESTION_STATUSES = ("queued", "answered", "cancelled", "failed")
ANSWER_STATUSES = ("ok", "failed")


def utcnow() -> datetime:
    """Return the current time as a timezone-aware UTC datetime."""
    return datetime.now(UTC)


def _in(column: str, values: tuple[str, ...]) -> str:
    """Return the SQL text ``column IN ('a', 'b')`` for a check constraint."""
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC that always comes back timezone-aware (also on SQLite)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Refuse naive datetimes and convert aware ones to UTC."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use an aware UTC datetime")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Attach UTC to what SQLite returns and normalise PostgreSQL's values to UTC."""
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base whose MetaData names constraints predictably (stable migrations)."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime()}  # noqa: RUF012


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


class ConsentEvent(Base):
    """One change of one consent; rows are never updated."""

    __tablename__ = "consent_events"
    __table_args__ = (
        CheckConstraint(_in("scope", CONSENT_SCOPES), name="scope"),
        CheckConstraint(_in("new_value", CONSENT_VALUES), name="new_value"),
        CheckConstraint(_in("source", CONSENT_SOURCES), name="source"),
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
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Question(Base):
    """A question; its text (and text hash) is kept only when ``research`` is true.

    ``red_flag`` is the label (``language:rule``) of the danger sign it matched, never text.
    """

    __tablename__ = "questions"
    __table_args__ = (CheckConstraint(_in("status", QUESTION_STATUSES), name="status"),)

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


class Answer(Base):
    """The answer to one question; text kept only when the question's ``research`` is true."""

    __tablename__ = "answers"
    __table_args__ = (CheckConstraint(_in("status", ANSWER_STATUSES), name="status"),)

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


def _refuse_update(_mapper: Mapper[Any], _connection: Any, target: object) -> None:
    """Refuse an ORM update of an append-only row."""
    raise StorageError(f"{type(target).__name__} rows are append-only")


event.listen(ConsentEvent, "before_update", _refuse_update)
event.listen(AuditEvent, "before_update", _refuse_update)
