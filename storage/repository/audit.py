"""The append-only, hash-chained audit log.

Each row stores ``hash = sha256(prev_hash + canonical content)``, where the content is the
canonical JSON of created_at (ISO, UTC), event, subject and the stored payload text; the first
row's ``prev_hash`` is 64 zeros. Writers are serialised so the chain never forks: PostgreSQL takes
a transaction-scoped advisory lock, SQLite transactions start with BEGIN IMMEDIATE (see db.py),
and ``prev_hash`` is unique, so a fork would fail to insert rather than be stored.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Row, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from storage.errors import AuditChainError
from storage.models import AuditEvent, utcnow

GENESIS_HASH = "0" * 64
AUDIT_LOCK_ID = 0x4D454449_41554454  # "MEDIAUDT": the advisory lock that serialises appends
_VERIFY_BATCH = 1000


def canonical_json(value: Any) -> str:
    """Serialise ``value`` canonically: sorted keys, no spaces, ASCII only."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def row_hash(prev_hash: str, created_at: datetime, event: str, subject: str | None, payload: str) -> str:
    """Return the chain hash of a row given the previous row's hash (the row id is not hashed)."""
    content = canonical_json(
        {
            "created_at": created_at.astimezone(UTC).isoformat(),
            "event": event,
            "payload": payload,
            "subject": subject,
        }
    )
    return hashlib.sha256((prev_hash + content).encode("ascii")).hexdigest()


async def _lock_chain(session: AsyncSession) -> None:
    """Serialise appenders until the end of the transaction (PostgreSQL advisory lock)."""
    connection = await session.connection()
    if connection.dialect.name == "postgresql":
        await session.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": AUDIT_LOCK_ID})


async def _last_hash(session: AsyncSession) -> str:
    """Return the hash of the newest row, or the genesis hash for an empty log."""
    query = select(AuditEvent.hash).order_by(AuditEvent.id.desc()).limit(1)
    last = (await session.execute(query)).scalar_one_or_none()
    return last if last is not None else GENESIS_HASH


async def append_audit(
    session: AsyncSession, event: str, subject: str | None, payload: dict[str, Any]
) -> AuditEvent:
    """Append one event to the chain inside the caller's transaction and return it."""
    await _lock_chain(session)
    await session.flush()  # earlier appends in this transaction are part of the chain
    prev_hash = await _last_hash(session)
    created_at, payload_text = utcnow(), canonical_json(payload)
    row = AuditEvent(
        created_at=created_at,
        event=event,
        subject=subject,
        payload=payload_text,
        prev_hash=prev_hash,
        hash=row_hash(prev_hash, created_at, event, subject, payload_text),
    )
    session.add(row)
    await session.flush()
    return row


_COLUMNS = (
    AuditEvent.id,
    AuditEvent.created_at,
    AuditEvent.event,
    AuditEvent.subject,
    AuditEvent.payload,
    AuditEvent.prev_hash,
    AuditEvent.hash,
)


def _check_row(row: Row[Any], expected_prev: str) -> None:
    """Raise AuditChainError if ``row`` does not follow ``expected_prev`` or was changed."""
    if row.prev_hash != expected_prev:
        raise AuditChainError(
            row.id, "prev_hash does not match the previous row (a row was removed or inserted)"
        )
    computed = row_hash(row.prev_hash, row.created_at, row.event, row.subject, row.payload)
    if computed != row.hash:
        raise AuditChainError(row.id, "content does not match its hash (the row was changed)")


async def verify_chain(session: AsyncSession) -> int:
    """Check every row in id order; return the row count or raise at the first broken row."""
    expected_prev, count, after_id = GENESIS_HASH, 0, None
    while True:
        query = select(*_COLUMNS).order_by(AuditEvent.id).limit(_VERIFY_BATCH)
        if after_id is not None:
            query = query.where(AuditEvent.id > after_id)
        batch = list((await session.execute(query)).all())
        if not batch:
            return count
        for row in batch:
            _check_row(row, expected_prev)
            expected_prev = row.hash
        count += len(batch)
        after_id = batch[-1].id
