"""Field-team operation tables: group enablement, answer feedback, invite codes and access grants.

Models join ``storage.models.Base``; functions take an AsyncSession. Feedback reasons (free text)
are stored only when the question's user agreed to research review.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Integer, String, Text, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from storage.models import Base, Question, User, utcnow

RATINGS = ("up", "down")
GRANT_SOURCES = ("invite",)
MAX_REASON_CHARS = 300


def code_hash(code: str) -> str:
    """sha256 of an invite code as typed (codes are never stored in clear)."""
    return hashlib.sha256(code.strip().encode("utf-8")).hexdigest()


class GroupChat(Base):
    """A group the bot is in, known by chat pseudonym; off until an administrator enables it."""

    __tablename__ = "group_chats"

    chat_pseudonym: Mapped[str] = mapped_column(String(64), primary_key=True)
    enabled: Mapped[bool] = mapped_column(Boolean)
    changed_by: Mapped[str] = mapped_column(String(64))
    changed_at: Mapped[datetime] = mapped_column(default=utcnow)


class Feedback(Base):
    """👍 / 👎 on one answer, with an optional one-line reason (research consent only)."""

    __tablename__ = "feedback"
    __table_args__ = (CheckConstraint("rating IN ('up', 'down')", name="rating"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    question_id: Mapped[str] = mapped_column(ForeignKey("questions.id"), unique=True)
    rating: Mapped[str] = mapped_column(String(8))
    reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class InviteCode(Base):
    """An invite code (its sha256 only), usable ``max_uses`` times until ``expires_at``."""

    __tablename__ = "invite_codes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    max_uses: Mapped[int] = mapped_column(Integer)
    uses: Mapped[int] = mapped_column(Integer, default=0)
    expires_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AccessGrant(Base):
    """A pseudonymous user let in by an invite code (allowlisted ids live in configuration)."""

    __tablename__ = "access_grants"
    __table_args__ = (CheckConstraint("source IN ('invite')", name="source"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    pseudonym: Mapped[str] = mapped_column(String(64), unique=True)
    source: Mapped[str] = mapped_column(String(16))
    invite_id: Mapped[int | None] = mapped_column(ForeignKey("invite_codes.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


# -- groups ------------------------------------------------------------------------------------


async def group_enabled(session: AsyncSession, chat_pseudonym: str) -> bool:
    """Whether an administrator has enabled the bot in this group."""
    group = await session.get(GroupChat, chat_pseudonym)
    return bool(group and group.enabled)


async def set_group_enabled(session: AsyncSession, chat_pseudonym: str, enabled: bool, by: str) -> None:
    """Turn the bot on or off in a group (``by`` is the administrator's pseudonym)."""
    group = await session.get(GroupChat, chat_pseudonym)
    if group is None:
        session.add(GroupChat(chat_pseudonym=chat_pseudonym, enabled=enabled, changed_by=by))
    else:
        group.enabled, group.changed_by, group.changed_at = enabled, by, utcnow()
    await session.flush()


# -- feedback ----------------------------------------------------------------------------------


async def asker_of(session: AsyncSession, question_id: str) -> tuple[str, bool] | None:
    """The asking user's pseudonym and research flag of a question, or None if unknown."""
    query = select(User.pseudonym, Question.research).join(User, Question.user_id == User.id)
    row = (await session.execute(query.where(Question.id == question_id))).first()
    return (row[0], bool(row[1])) if row else None


async def record_feedback(session: AsyncSession, question_id: str, rating: str) -> Feedback:
    """Store (or change) the rating of an answer."""
    if rating not in RATINGS:
        raise ValueError(f"rating must be one of {RATINGS}, not {rating!r}")
    feedback = (
        await session.execute(select(Feedback).where(Feedback.question_id == question_id))
    ).scalar_one_or_none()
    if feedback is None:
        feedback = Feedback(question_id=question_id, rating=rating)
        session.add(feedback)
    else:
        feedback.rating, feedback.updated_at = rating, utcnow()
    await session.flush()
    return feedback


async def record_reason(session: AsyncSession, question_id: str, reason: str) -> bool:
    """Attach a one-line reason to a 👎; stored only with research consent. True if stored."""
    asker = await asker_of(session, question_id)
    feedback = (
        await session.execute(select(Feedback).where(Feedback.question_id == question_id))
    ).scalar_one_or_none()
    if asker is None or feedback is None or not asker[1]:
        return False
    feedback.reason = " ".join(reason.split())[:MAX_REASON_CHARS]
    feedback.updated_at = utcnow()
    await session.flush()
    return True


async def feedback_counts(session: AsyncSession) -> dict[str, int]:
    """How many 👍 and 👎 were given (for statistics)."""
    rows = await session.execute(select(Feedback.rating, func.count()).group_by(Feedback.rating))
    counts = dict.fromkeys(RATINGS, 0)
    counts.update({rating: int(count) for rating, count in rows.all()})
    return counts


# -- invites and access ------------------------------------------------------------------------


async def create_invite(session: AsyncSession, uses: int, expires_at: datetime | None) -> str:
    """A new invite code (returned once, stored only as its sha256)."""
    if uses < 1:
        raise ValueError("an invite needs at least one use")
    code = secrets.token_urlsafe(12)
    session.add(InviteCode(code_sha256=code_hash(code), max_uses=uses, uses=0, expires_at=expires_at))
    await session.flush()
    return code


async def redeem_invite(session: AsyncSession, code: str, pseudonym: str) -> bool:
    """Let the user in with a valid, unexpired, not used-up code; True when they now have access."""
    if await has_grant(session, pseudonym):
        return True
    query = select(InviteCode).where(InviteCode.code_sha256 == code_hash(code)).with_for_update()
    invite = (await session.execute(query)).scalar_one_or_none()
    if invite is None or invite.uses >= invite.max_uses:
        return False
    if invite.expires_at is not None and invite.expires_at <= utcnow():
        return False
    invite.uses += 1
    session.add(AccessGrant(pseudonym=pseudonym, source="invite", invite_id=invite.id))
    await session.flush()
    return True


async def has_grant(session: AsyncSession, pseudonym: str) -> bool:
    """Whether this user redeemed an invite."""
    query = select(AccessGrant.id).where(AccessGrant.pseudonym == pseudonym)
    return (await session.execute(query)).first() is not None
