"""Database reads behind the review pages (conversations, audit log, consent events)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import ColumnElement, Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.errors import AuditChainError
from storage.models import Answer, AuditEvent, ConsentEvent, Question, User
from storage.repositories.audit import verify_chain
from storage.repositories.export import research_conditions
from storage.repositories.library import StoredPassage, parse_passage_ids, passages_by_ids
from storage.repositories.signals import Signals, feedback_condition, red_flag_condition, signals_of

PAGE_SIZE = 25
MAX_PAGE = 100_000
GROUP_CHAT_TYPES = ("group", "supergroup")
_PAGE = re.compile(r"[0-9]{1,6}")  # ASCII digits only: int() would also take "٣" and 20-digit numbers
_LANGUAGE = re.compile(r"[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{1,4})?")
_QUESTION_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")
FIRST_DAY, LAST_DAY = date(2000, 1, 1), date(2999, 12, 31)  # outside: a typo, and day arithmetic stays safe


def page_number(value: str | None) -> int:
    """A page number from a query parameter: 1 to ``MAX_PAGE``; absent or malformed values are page 1."""
    if value is None or not _PAGE.fullmatch(value):
        return 1
    return min(max(1, int(value)), MAX_PAGE)


def valid_question_id(value: str) -> bool:
    """Whether ``value`` can be a question id (anything else is not looked up)."""
    return _QUESTION_ID.fullmatch(value) is not None


def _date(value: str | None) -> date | None:
    """A YYYY-MM-DD value, or None when absent, malformed or outside ``FIRST_DAY``..``LAST_DAY``."""
    try:
        day = date.fromisoformat(value) if value else None
    except ValueError:
        return None
    return day if day is not None and FIRST_DAY <= day <= LAST_DAY else None


def _language(value: str | None) -> str:
    """A language code (``en``, ``pt-BR``) or "" (no filter)."""
    value = (value or "").strip()
    return value if _LANGUAGE.fullmatch(value) else ""


def _choice(value: str | None, allowed: tuple[str, ...]) -> str:
    """``value`` if allowed, else "" (no filter)."""
    return value if value in allowed else ""


def day_start(day: date) -> datetime:
    """Midnight UTC at the start of ``day``."""
    return datetime.combine(day, time(), tzinfo=UTC)


@dataclass(frozen=True)
class ConversationFilter:
    """The filters of the conversations page; empty values mean "any"."""

    since: date | None = None
    until: date | None = None
    language: str = ""
    chat: str = ""  # private | group
    red_flag: str = ""  # yes | no
    feedback: str = ""  # up | down | none
    page: int = 1

    @classmethod
    def from_query(cls, params: Mapping[str, str]) -> ConversationFilter:
        """Read the filters from query parameters, ignoring malformed values."""
        return cls(
            since=_date(params.get("from")),
            until=_date(params.get("to")),
            language=_language(params.get("lang")),
            chat=_choice(params.get("chat"), ("private", "group")),
            red_flag=_choice(params.get("flag"), ("yes", "no")),
            feedback=_choice(params.get("feedback"), ("up", "down", "none")),
            page=page_number(params.get("page")),
        )

    def query_string(self, page: int) -> str:
        """The query string of these filters on ``page``."""
        parts = {
            "from": self.since.isoformat() if self.since else "",
            "to": self.until.isoformat() if self.until else "",
            "lang": self.language,
            "chat": self.chat,
            "flag": self.red_flag,
            "feedback": self.feedback,
        }
        kept = [f"{key}={value}" for key, value in parts.items() if value]
        return "&".join([*kept, f"page={page}"])


def _time_conditions(filters: ConversationFilter) -> list[ColumnElement[bool]]:
    """Date range (inclusive days) conditions."""
    conditions = []
    if filters.since:
        conditions.append(Question.received_at >= day_start(filters.since))
    if filters.until:
        conditions.append(Question.received_at < day_start(filters.until + timedelta(days=1)))
    return conditions


def _kind_conditions(filters: ConversationFilter) -> list[ColumnElement[bool]]:
    """Language and chat-type conditions."""
    conditions = []
    if filters.language:
        conditions.append(Question.language == filters.language)
    if filters.chat == "private":
        conditions.append(Question.chat_type == "private")
    elif filters.chat == "group":
        conditions.append(Question.chat_type.in_(GROUP_CHAT_TYPES))
    return conditions


def _signal_conditions(filters: ConversationFilter) -> list[ColumnElement[bool]]:
    """Red-flag and feedback conditions."""
    conditions = []
    if filters.red_flag:
        conditions.append(red_flag_condition(filters.red_flag))
    if filters.feedback:
        conditions.append(feedback_condition(filters.feedback))
    return conditions


def _conversations_query(filters: ConversationFilter) -> Select[tuple[Question, Answer, str]]:
    """Research conversations matching ``filters`` (not yet paged)."""
    return (
        select(Question, Answer, User.pseudonym)
        .join(User, User.id == Question.user_id)
        .outerjoin(Answer, Answer.question_id == Question.id)
        .where(
            *research_conditions(),
            *_time_conditions(filters),
            *_kind_conditions(filters),
            *_signal_conditions(filters),
        )
    )


@dataclass(frozen=True)
class Conversation:
    """One question, its answer (if any), the asker's pseudonym, its red flag and feedback."""

    question: Question
    answer: Answer | None
    pseudonym: str
    signals: Signals = field(default_factory=Signals)
    # The library passages the answer rested on, by id (None: removed from the library since).
    passages: list[tuple[int, StoredPassage | None]] = field(default_factory=list)


@dataclass
class ConversationPage:
    """One page of conversations and how many match in all."""

    items: list[Conversation]
    total: int
    page: int
    pages: int = field(init=False)

    def __post_init__(self) -> None:
        """Number of pages (at least one)."""
        self.pages = max(1, -(-self.total // PAGE_SIZE))


async def conversations(session: AsyncSession, filters: ConversationFilter) -> ConversationPage:
    """The page of conversations ``filters`` asks for, newest first."""
    query = _conversations_query(filters)
    total = int((await session.execute(select(func.count()).select_from(query.subquery()))).scalar_one())
    paged = (
        query.order_by(Question.received_at.desc(), Question.id)
        .limit(PAGE_SIZE)
        .offset((filters.page - 1) * PAGE_SIZE)
    )
    rows = list((await session.execute(paged)).tuples())
    known = await signals_of(session, [question for question, _, _ in rows])
    items = [Conversation(q, a, pseudonym, known[q.id]) for q, a, pseudonym in rows]
    return ConversationPage(items, total, filters.page)


async def conversation(session: AsyncSession, question_id: str) -> Conversation | None:
    """One research conversation, or None when there is none with that id."""
    if not valid_question_id(question_id):
        return None
    query = _conversations_query(ConversationFilter()).where(Question.id == question_id)
    row = (await session.execute(query)).tuples().first()
    if row is None:
        return None
    known = await signals_of(session, [row[0]])
    ids = parse_passage_ids(row[0].passage_ids)
    stored = await passages_by_ids(session, ids)
    passages = [(passage_id, stored.get(passage_id)) for passage_id in ids]
    return Conversation(row[0], row[1], row[2], known[row[0].id], passages)


async def thread(session: AsyncSession, item: Conversation) -> list[Conversation]:
    """Every research turn of ``item``'s conversation (same person, same conversation id), in order.

    Just ``item`` when its answer has no conversation id (answers before conversations existed).
    """
    answer = item.answer
    if answer is None or answer.conversation_id is None:
        return [item]
    query = _conversations_query(ConversationFilter()).where(
        Answer.conversation_id == answer.conversation_id, Question.user_id == item.question.user_id
    )
    rows = list((await session.execute(query.order_by(Answer.turn, Question.received_at))).tuples())
    return [Conversation(q, a, pseudonym) for q, a, pseudonym in rows] or [item]


async def languages(session: AsyncSession) -> list[str]:
    """Languages seen in questions (for the filter)."""
    query = select(Question.language).where(Question.language.isnot(None)).distinct()
    return sorted(str(value) for value in (await session.execute(query)).scalars())


@dataclass(frozen=True)
class ChainStatus:
    """The audit chain's verification: rows checked, or the first broken row and why."""

    ok: bool
    rows: int = 0
    broken_row: int | None = None
    reason: str = ""


async def chain_status(session: AsyncSession) -> ChainStatus:
    """Walk the whole audit chain."""
    try:
        return ChainStatus(True, rows=await verify_chain(session))
    except AuditChainError as exc:
        return ChainStatus(False, broken_row=exc.row_id, reason=str(exc))


async def audit_events(session: AsyncSession, page: int) -> tuple[list[AuditEvent], int]:
    """One page of audit events (newest first) and the total count."""
    total = int((await session.execute(select(func.count()).select_from(AuditEvent))).scalar_one())
    query = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(PAGE_SIZE).offset((page - 1) * PAGE_SIZE)
    return list((await session.execute(query)).scalars()), total


async def consent_events(session: AsyncSession, page: int) -> tuple[list[tuple[ConsentEvent, str]], int]:
    """One page of consent events with each user's pseudonym (newest first) and the total count."""
    total = int((await session.execute(select(func.count()).select_from(ConsentEvent))).scalar_one())
    query = (
        select(ConsentEvent, User.pseudonym)
        .join(User, User.id == ConsentEvent.user_id)
        .order_by(ConsentEvent.id.desc())
        .limit(PAGE_SIZE)
        .offset((page - 1) * PAGE_SIZE)
    )
    return list((await session.execute(query)).tuples()), total
