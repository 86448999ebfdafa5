"""Review-console accounts: argon2 password hashes, roles, disabling and lockout after failed logins.

There is no default account: the first one is created with ``meditron-bot admin add-user``. A
login that fails ``MAX_FAILED_LOGINS`` times in a row locks the account for ``LOCK_DURATION``.
``session_epoch`` is part of every console session; raising it (logout, disable) ends them all.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import Boolean, CheckConstraint, Integer, String, false, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from storage.errors import StorageError
from storage.models import Base, utcnow
from storage.repository.audit import append_audit

ROLES = ("reviewer", "admin")
MAX_FAILED_LOGINS = 5
LOCK_DURATION = timedelta(minutes=15)
MIN_PASSWORD_CHARS = 12
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.@-]{2,64}$")

_HASHER = PasswordHasher()
_DUMMY_HASH = _HASHER.hash("not a password of anybody: evens out the time of unknown names")


class AccountError(StorageError):
    """An account operation was refused (bad name, weak password, unknown or duplicate account)."""


class ReviewAccount(Base):
    """A person who may log in to the review console."""

    __tablename__ = "review_accounts"
    __table_args__ = (CheckConstraint("role IN ('reviewer', 'admin')", name="role"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    failed_logins: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    locked_until: Mapped[datetime | None]
    session_epoch: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[datetime | None]

    def __repr__(self) -> str:
        """Describe the account without its hash."""
        return f"ReviewAccount(name={self.name!r}, role={self.role!r}, disabled={self.disabled})"


@dataclass(frozen=True)
class LoginResult:
    """What a login attempt gave: the account when ``ok``, else why not (never which part was wrong)."""

    ok: bool
    reason: str  # "ok", "invalid", "locked"
    account: ReviewAccount | None = None


def check_password_strength(password: str) -> None:
    """Raise AccountError when the password is too short."""
    if len(password) < MIN_PASSWORD_CHARS:
        raise AccountError(f"the password must have at least {MIN_PASSWORD_CHARS} characters")


async def get_account(session: AsyncSession, name: str) -> ReviewAccount | None:
    """Return the account called ``name``, or None."""
    query = select(ReviewAccount).where(ReviewAccount.name == name)
    return (await session.execute(query)).scalar_one_or_none()


async def list_accounts(session: AsyncSession) -> list[ReviewAccount]:
    """Return every account, by name."""
    return list((await session.execute(select(ReviewAccount).order_by(ReviewAccount.name))).scalars())


async def add_account(
    session: AsyncSession, name: str, password: str, role: str, *, actor: str = "cli"
) -> ReviewAccount:
    """Create an account with an argon2 hash of ``password`` and audit it (never the password)."""
    if role not in ROLES:
        raise AccountError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    if not NAME_PATTERN.match(name):
        raise AccountError("a name has 2-64 letters, digits or . _ @ -")
    check_password_strength(password)
    if await get_account(session, name) is not None:
        raise AccountError(f"an account called {name!r} already exists")
    password_hash = await asyncio.to_thread(_HASHER.hash, password)
    account = ReviewAccount(name=name, password_hash=password_hash, role=role)
    session.add(account)
    await session.flush()
    await append_audit(session, "account.created", name, {"actor": actor, "role": role})
    return account


async def _require(session: AsyncSession, name: str) -> ReviewAccount:
    """Return the account or raise AccountError."""
    account = await get_account(session, name)
    if account is None:
        raise AccountError(f"no account called {name!r}")
    return account


async def disable_account(session: AsyncSession, name: str, *, actor: str = "cli") -> ReviewAccount:
    """Disable the account, end its sessions and audit it."""
    account = await _require(session, name)
    account.disabled = True
    account.session_epoch += 1
    await session.flush()
    await append_audit(session, "account.disabled", name, {"actor": actor})
    return account


async def unlock_account(session: AsyncSession, name: str, *, actor: str) -> ReviewAccount:
    """Clear the failed-login counter and the lock, and audit it."""
    account = await _require(session, name)
    account.failed_logins = 0
    account.locked_until = None
    await session.flush()
    await append_audit(session, "account.unlocked", name, {"actor": actor})
    return account


def is_locked(account: ReviewAccount, now: datetime) -> bool:
    """Whether the account is locked at ``now``."""
    return account.locked_until is not None and account.locked_until > now


async def _password_matches(password_hash: str, password: str) -> bool:
    """Verify with argon2 in a thread; any mismatch or bad hash is False."""
    try:
        return await asyncio.to_thread(_HASHER.verify, password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


async def record_failed_login(session: AsyncSession, account: ReviewAccount, now: datetime) -> None:
    """Count one failure; lock the account after ``MAX_FAILED_LOGINS`` in a row."""
    account.failed_logins += 1
    if account.failed_logins >= MAX_FAILED_LOGINS:
        account.locked_until = now + LOCK_DURATION
        account.failed_logins = 0
        await append_audit(
            session, "account.locked", account.name, {"until": account.locked_until.isoformat()}
        )
    await session.flush()


async def _succeed(session: AsyncSession, account: ReviewAccount, now: datetime) -> LoginResult:
    """Reset the counters, note the time and audit the login."""
    account.failed_logins = 0
    account.locked_until = None
    account.last_login_at = now
    await session.flush()
    await append_audit(session, "console.login", account.name, {"role": account.role})
    return LoginResult(True, "ok", account)


async def verify_login(
    session: AsyncSession, name: str, password: str, now: datetime | None = None
) -> LoginResult:
    """Check a name and password; counts failures and refuses locked or disabled accounts."""
    now = now or utcnow()
    account = await get_account(session, name)
    if account is None or account.disabled:
        await _password_matches(_DUMMY_HASH, password)  # same time as a real check
        return LoginResult(False, "invalid")
    if is_locked(account, now):
        return LoginResult(False, "locked")
    if not await _password_matches(account.password_hash, password):
        await record_failed_login(session, account, now)
        return LoginResult(False, "locked" if is_locked(account, now) else "invalid")
    return await _succeed(session, account, now)


async def end_sessions(session: AsyncSession, account_id: int) -> None:
    """Raise the account's session epoch so that every session of it ends (logout)."""
    account = await session.get(ReviewAccount, account_id)
    if account is not None:
        account.session_epoch += 1
        await session.flush()
