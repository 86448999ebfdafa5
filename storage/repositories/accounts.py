"""Review-console accounts: argon2 password hashes, roles, disabling and lockout after failed logins.

There is no default account: the first one is created with ``meditron-bot admin add-user``. A
login that fails ``MAX_FAILED_LOGINS`` times in a row locks the account for ``LOCK_DURATION``.
An attempt is counted (one atomic UPDATE) before its password is checked, so parallel attempts
cannot outrun the count, and a locked account's password is never checked.
``session_epoch`` is part of every console session; raising it (logout, disable) ends them all.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import ColumnElement, and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.errors import StorageError
from storage.models import ROLES, ReviewAccount
from storage.repositories.audit import append_audit

MAX_FAILED_LOGINS = 5
LOCK_DURATION = timedelta(minutes=15)
MIN_PASSWORD_CHARS = 12
NAME_PATTERN = re.compile(r"[A-Za-z0-9_.@-]{2,64}")

_HASHER = PasswordHasher()
_DUMMY_HASH = _HASHER.hash("not a password of anybody: evens out the time of unknown names")


class AccountError(StorageError):
    """An account operation was refused (bad name, weak password, unknown or duplicate account)."""


@dataclass(frozen=True)
class LoginResult:
    """What a login attempt gave: the account when ``ok``, else why not (never which part was wrong)."""

    ok: bool
    reason: str  # "ok" or "invalid": a locked account fails like a wrong password
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
    if not NAME_PATTERN.fullmatch(name):
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
    account = await get_account(session, name) if NAME_PATTERN.fullmatch(name) else None
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


@dataclass(frozen=True)
class LoginAttempt:
    """One counted login attempt; ``account_id`` is None when it was refused before any password check.

    ``locks`` is true for the ``MAX_FAILED_LOGINS``-th attempt in a row, which locked the account
    before its password was checked.
    """

    name: str
    account_id: int | None = None
    password_hash: str = field(default=_DUMMY_HASH, repr=False)
    locks: bool = False


def _open_for_login(now: datetime) -> ColumnElement[bool]:
    """Enabled accounts that are not locked at ``now``."""
    unlocked = or_(ReviewAccount.locked_until.is_(None), ReviewAccount.locked_until <= now)
    return and_(ReviewAccount.disabled.is_(False), unlocked)


async def start_login(session: AsyncSession, name: str, now: datetime) -> LoginAttempt:
    """Count an attempt on ``name`` before its password is checked (one atomic UPDATE ... RETURNING).

    The attempt that reaches ``MAX_FAILED_LOGINS`` locks the account at once, so that parallel
    attempts are refused without a password check; unknown, disabled and locked names get a refused
    attempt. Commit before checking the password: the count must not wait for the hash.
    """
    if not NAME_PATTERN.fullmatch(name):
        return LoginAttempt(name)
    counted = (
        update(ReviewAccount)
        .where(ReviewAccount.name == name, _open_for_login(now))
        .values(failed_logins=ReviewAccount.failed_logins + 1)
        .returning(ReviewAccount.id, ReviewAccount.password_hash, ReviewAccount.failed_logins)
        .execution_options(synchronize_session=False)
    )
    row = (await session.execute(counted)).first()
    if row is None:
        return LoginAttempt(name)
    account_id, password_hash, failures = row
    locks = failures >= MAX_FAILED_LOGINS
    if locks:
        lock = update(ReviewAccount).where(ReviewAccount.id == account_id)
        await session.execute(
            lock.values(locked_until=now + LOCK_DURATION, failed_logins=0).execution_options(
                synchronize_session=False
            )
        )
    return LoginAttempt(name, account_id, password_hash, locks)


async def password_matches(attempt: LoginAttempt, password: str) -> bool:
    """Verify with argon2 in a thread; a refused attempt checks a dummy hash (same time) and is False."""
    try:
        matched = await asyncio.to_thread(_HASHER.verify, attempt.password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False
    return matched and attempt.account_id is not None


async def finish_login(
    session: AsyncSession, attempt: LoginAttempt, matched: bool, now: datetime
) -> LoginResult:
    """Settle a checked attempt: a failure stays counted (audited when it locked the account);
    a success clears the counter and the lock, notes the time and audits the login."""
    if not matched or attempt.account_id is None:
        if attempt.locks:
            until = (now + LOCK_DURATION).isoformat()
            await append_audit(session, "account.locked", attempt.name, {"until": until})
        return LoginResult(False, "invalid")
    account = await session.get(ReviewAccount, attempt.account_id)
    if account is None or account.disabled:  # disabled while the password was checked
        return LoginResult(False, "invalid")
    account.failed_logins = 0
    account.locked_until = None
    account.last_login_at = now
    await session.flush()
    await append_audit(session, "console.login", account.name, {"role": account.role})
    return LoginResult(True, "ok", account)


async def end_sessions(session: AsyncSession, account_id: int) -> None:
    """Raise the account's session epoch so that every session of it ends (logout)."""
    account = await session.get(ReviewAccount, account_id)
    if account is not None:
        account.session_epoch += 1
        await session.flush()
