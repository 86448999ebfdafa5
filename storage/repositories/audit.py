"""The append-only, hash-chained audit log, anchored outside the database.

Each row stores ``hash = H(prev_hash + canonical content)``, where the content is the canonical JSON
of created_at (ISO, UTC), event, subject and the stored payload text; the first row's ``prev_hash``
is 64 zeros. ``H`` is HMAC-SHA256 under the chain key (derived from the pseudonym key, see
``storage.audit_anchor``) for rows written by a session of an anchored sessionmaker, and plain
SHA-256 for rows written before keying existed or without an anchor. Verification accepts a plain
row only before the first keyed one, so a rewrite recomputed without the key is detected.

After the transaction that appended rows commits, the newest row (id, hash) is written to the
anchor file, which ``verify_audit`` checks: truncation and recomputed rewrites up to that row are
detected. Writers are serialised so the chain never forks: PostgreSQL takes a transaction-scoped
advisory lock, SQLite transactions start with BEGIN IMMEDIATE (see db.py), and ``prev_hash`` is
unique, so a fork would fail to insert rather than be stored.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
from sqlalchemy import Row, event, select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from storage.audit_anchor import SESSION_INFO_KEY, AuditAnchor, Checkpoint, anchor_of
from storage.errors import AuditAnchorError, AuditChainError
from storage.models import AuditEvent, utcnow

GENESIS_HASH = "0" * 64
AUDIT_LOCK_ID = 0x4D454449_41554454  # "MEDIAUDT": the advisory lock that serialises appends
_VERIFY_BATCH = 1000
_PENDING = "meditron.audit_head"  # session.info: the newest row appended in the open transaction
_LISTENING = "meditron.audit_listening"
log = structlog.get_logger("storage.audit")


def canonical_json(value: Any) -> str:
    """Serialise ``value`` canonically: sorted keys, no spaces, ASCII only."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def row_hash(
    prev_hash: str,
    created_at: datetime,
    event: str,
    subject: str | None,
    payload: str,
    key: bytes | None = None,
) -> str:
    """Return the chain hash of a row given the previous row's hash (the row id is not hashed).

    With ``key`` it is HMAC-SHA256 under that key, without it plain SHA-256 (rows before keying).
    """
    content = canonical_json(
        {
            "created_at": created_at.astimezone(UTC).isoformat(),
            "event": event,
            "payload": payload,
            "subject": subject,
        }
    )
    message = (prev_hash + content).encode("ascii")
    if key is None:
        return hashlib.sha256(message).hexdigest()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


async def lock_chain(session: AsyncSession) -> None:
    """Serialise audit writers until the end of the transaction (PostgreSQL advisory lock).

    On SQLite the transaction already holds the write lock (BEGIN IMMEDIATE, see db.py).
    """
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
    anchor = anchor_of(session)
    await lock_chain(session)
    await session.flush()  # earlier appends in this transaction are part of the chain
    prev_hash = await _last_hash(session)
    created_at, payload_text = utcnow(), canonical_json(payload)
    key = anchor.chain_key if anchor is not None else None
    row = AuditEvent(
        created_at=created_at,
        event=event,
        subject=subject,
        payload=payload_text,
        prev_hash=prev_hash,
        hash=row_hash(prev_hash, created_at, event, subject, payload_text, key),
    )
    session.add(row)
    await session.flush()
    if anchor is not None:
        _anchor_after_commit(session.sync_session, Checkpoint(row.id, row.hash))
    return row


def _anchor_after_commit(session: Session, head: Checkpoint) -> None:
    """Remember ``head`` as the transaction's newest row; the anchor moves to it once committed."""
    session.info[_PENDING] = head
    if not session.info.get(_LISTENING):
        session.info[_LISTENING] = True
        event.listen(session, "after_commit", _advance_anchor)
        event.listen(session, "after_rollback", _forget_head)


def _advance_anchor(session: Session) -> None:
    """After commit: move the anchor to the committed head (a failure is logged, never raised)."""
    head = session.info.pop(_PENDING, None)
    anchor = session.info.get(SESSION_INFO_KEY)
    if not isinstance(head, Checkpoint) or not isinstance(anchor, AuditAnchor):
        return
    try:
        anchor.advance(head)
    except (OSError, AuditAnchorError) as exc:  # the rows are committed; `audit verify` will tell
        log.error("audit.anchor_not_advanced", row_id=head.row_id, reason=str(exc))


def _forget_head(session: Session) -> None:
    """After rollback: the remembered rows are gone, nothing to anchor."""
    session.info.pop(_PENDING, None)


_COLUMNS = (
    AuditEvent.id,
    AuditEvent.created_at,
    AuditEvent.event,
    AuditEvent.subject,
    AuditEvent.payload,
    AuditEvent.prev_hash,
    AuditEvent.hash,
)


@dataclass(frozen=True)
class ChainReport:
    """What ``verify_audit`` checked: rows, how many are keyed, and where the anchor is.

    ``anchor`` is the checkpoint that was checked (None when the session has no anchor);
    ``anchored_rows`` is the position of the anchored row and ``unanchored_rows`` the newer rows
    (committed by a process that has not yet moved the anchor, or one that could not).
    """

    rows: int
    keyed_rows: int
    anchor: Checkpoint | None = None
    anchored_rows: int = 0

    @property
    def unanchored_rows(self) -> int:
        """Rows after the anchored one (all rows when nothing is anchored)."""
        return self.rows - self.anchored_rows


class _Walk:
    """State of one pass over the chain in id order."""

    def __init__(self, key: bytes | None, checkpoint: Checkpoint | None) -> None:
        self.key, self.checkpoint = key, checkpoint
        self.expected_prev, self.last_id = GENESIS_HASH, 0
        self.rows = self.keyed_rows = self.anchored_rows = 0

    def check(self, row: Row[Any]) -> None:
        """Raise AuditChainError if ``row`` does not follow the previous row, was changed, or moved."""
        if row.prev_hash != self.expected_prev:
            raise AuditChainError(
                row.id, "prev_hash does not match the previous row (a row was removed or inserted)"
            )
        self.keyed_rows += self._keyed(row)
        self.rows += 1
        if self.checkpoint is not None and row.id == self.checkpoint.row_id:
            if row.hash != self.checkpoint.head_hash:
                raise AuditAnchorError(
                    "the row differs from the anchored one: it or an earlier row was rewritten", row.id
                )
            self.anchored_rows = self.rows
        self.expected_prev, self.last_id = row.hash, row.id

    def _keyed(self, row: Row[Any]) -> bool:
        """True for a row hashed with the chain key, False for a plain row before any keyed one."""
        fields = (row.prev_hash, row.created_at, row.event, row.subject, row.payload)
        if self.key is not None and row_hash(*fields, self.key) == row.hash:
            return True
        if row_hash(*fields) != row.hash:
            hint = "" if self.key is not None else "; or it is keyed and this check has no audit key"
            raise AuditChainError(row.id, f"content does not match its hash (the row was changed{hint})")
        if self.keyed_rows:
            raise AuditChainError(
                row.id, "unkeyed hash after keyed rows (rewritten without the key, or written without it)"
            )
        return False

    def report(self, anchor: AuditAnchor | None) -> ChainReport:
        """The result, or AuditAnchorError when the chain does not reach its anchor."""
        checkpoint = self.checkpoint
        if anchor is not None and checkpoint is None and self.rows:
            raise AuditAnchorError(
                f"no anchor file {anchor.path} although the log has {self.rows} rows: the file was "
                "deleted, or no process with the audit key has written since the upgrade",
                self.last_id,
            )
        if checkpoint is not None and not self.anchored_rows:
            raise AuditAnchorError(
                _missing_anchor_reason(self.rows, self.last_id, checkpoint), checkpoint.row_id
            )
        return ChainReport(self.rows, self.keyed_rows, checkpoint, self.anchored_rows)


def _missing_anchor_reason(rows: int, last_id: int, checkpoint: Checkpoint) -> str:
    """Why the anchored row was not found."""
    if rows == 0:
        return f"the log is empty but the anchor records row {checkpoint.row_id}: all rows were deleted"
    if last_id < checkpoint.row_id:
        return (
            f"the log ends at row {last_id} but the anchor records row {checkpoint.row_id}: "
            "the newest rows were deleted"
        )
    return f"the anchored row {checkpoint.row_id} is missing: rows were deleted or renumbered"


async def verify_audit(session: AsyncSession) -> ChainReport:
    """Check every row in id order and, with an anchored session, that the chain reaches its anchor.

    Raises AuditChainError (AuditAnchorError for anchor problems) at the first problem found.
    """
    anchor = anchor_of(session)
    checkpoint = anchor.read() if anchor is not None else None  # read first: it only moves forward
    walk, after_id = _Walk(anchor.chain_key if anchor else None, checkpoint), 0
    while True:
        query = select(*_COLUMNS).where(AuditEvent.id > after_id).order_by(AuditEvent.id).limit(_VERIFY_BATCH)
        batch = list((await session.execute(query)).all())
        if not batch:
            return walk.report(anchor)
        for row in batch:
            walk.check(row)
        after_id = batch[-1].id


async def verify_chain(session: AsyncSession) -> int:
    """Check the whole chain (and its anchor, if the session has one); return the row count."""
    return (await verify_audit(session)).rows
