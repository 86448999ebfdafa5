"""The audit chain's anchor: a keyed checkpoint of its newest row, kept outside the database.

The file ``<data_dir>/audit.anchor`` holds one JSON object: the id and chain hash of the newest audit
row some process committed, and an HMAC-SHA256 over both. ``audit verify`` checks that this row is
still in the chain with this hash, so deleting the newest rows, deleting all rows, or rewriting a row
and recomputing every later hash is detected. Every writer moves the anchor forward right after its
transaction commits (``storage.repositories.audit`` does this for sessions made by an anchored
sessionmaker); the file is locked with ``fcntl.flock`` and replaced atomically, and a checkpoint
older than the one in the file is never written, so concurrent processes cannot move it back.

The keys are derived from the pseudonym key (``Pseudonymizer.derive_key``), which already lives outside
the database: one signs the anchor, the other keys the chain hash of new rows (see audit.py). Whoever
holds the pseudonym key can forge both, exactly as they can already re-identify pseudonyms.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage.errors import AuditAnchorError
from storage.pseudonym import Pseudonymizer
from storage.settings import StorageSettings

ANCHOR_FILE_NAME = "audit.anchor"
LOCK_FILE_NAME = "audit.anchor.lock"
SESSION_INFO_KEY = "meditron.audit_anchor"
_FORMAT = 1
Maker = TypeVar("Maker", bound=async_sessionmaker[AsyncSession])


@dataclass(frozen=True)
class Checkpoint:
    """The newest anchored audit row: its id and its chain hash."""

    row_id: int
    head_hash: str


class AuditAnchor:
    """Reads, checks and moves forward the anchor file; holds the chain key (never printed)."""

    __slots__ = ("_anchor_key", "chain_key", "path")

    def __init__(self, path: Path, *, anchor_key: bytes, chain_key: bytes) -> None:
        """Use ``from_pseudonyms`` or ``for_storage`` rather than this directly."""
        self.path = path
        self._anchor_key = anchor_key
        self.chain_key = chain_key

    @classmethod
    def from_pseudonyms(cls, data_dir: Path, pseudonyms: Pseudonymizer) -> AuditAnchor:
        """The anchor in ``data_dir`` with keys derived from the pseudonym key."""
        return cls(
            Path(data_dir) / ANCHOR_FILE_NAME,
            anchor_key=pseudonyms.derive_key("audit-anchor"),
            chain_key=pseudonyms.derive_key("audit-chain"),
        )

    @classmethod
    def for_storage(cls, storage: StorageSettings) -> AuditAnchor:
        """The anchor of a process configured by ``storage`` (PSEUDONYM_KEY or the key file)."""
        key = storage.pseudonym_key.get_secret_value() if storage.pseudonym_key else None
        data_dir = storage.ensure_data_dir()
        return cls.from_pseudonyms(data_dir, Pseudonymizer.load_or_create(data_dir, key))

    def attach(self, sessionmaker: Maker) -> Maker:
        """Make every session of ``sessionmaker`` key new audit rows and anchor them after commit."""
        info = dict(sessionmaker.kw.get("info") or {})
        info[SESSION_INFO_KEY] = self
        sessionmaker.configure(info=info)
        return sessionmaker

    def read(self) -> Checkpoint | None:
        """The checkpoint in the file, None when there is no file; AuditAnchorError if it is not valid."""
        try:
            text = self.path.read_text(encoding="ascii")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise AuditAnchorError(f"cannot read the anchor file {self.path}: {exc}") from None
        return self._parse(text)

    def advance(self, checkpoint: Checkpoint) -> bool:
        """Write ``checkpoint`` unless the file already holds a newer one; True if written.

        Raises AuditAnchorError (and leaves the file alone) when the current file is not valid.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        lock = self.path.with_name(LOCK_FILE_NAME)
        descriptor = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            current = self.read()
            if current is not None and current.row_id >= checkpoint.row_id:
                return False
            self._write(checkpoint)
            return True
        finally:
            os.close(descriptor)  # releases the lock

    def _mac(self, row_id: int, head_hash: str) -> str:
        """HMAC-SHA256 (hex) of the checkpoint under the anchor key."""
        message = f"meditron-audit-anchor:{_FORMAT}:{row_id}:{head_hash}".encode("ascii")
        return hmac.new(self._anchor_key, message, hashlib.sha256).hexdigest()

    def _parse(self, text: str) -> Checkpoint:
        """The checkpoint in ``text`` after checking its format and signature."""
        try:
            data = json.loads(text)
            row_id, head_hash, mac = int(data["row_id"]), str(data["head_hash"]), str(data["mac"])
            if data["format"] != _FORMAT:
                raise ValueError("unknown format")
        except (ValueError, KeyError, TypeError):
            raise AuditAnchorError(f"the anchor file {self.path} is not a valid anchor") from None
        if not hmac.compare_digest(mac, self._mac(row_id, head_hash)):
            raise AuditAnchorError(
                f"the anchor file {self.path} has a wrong signature: it was edited, or this process "
                "has a different PSEUDONYM_KEY than the writers"
            )
        return Checkpoint(row_id, head_hash)

    def _write(self, checkpoint: Checkpoint) -> None:
        """Replace the file atomically (a fresh 0600 file, fsynced, renamed over the old one).

        The directory is not fsynced: should a crash undo the rename, the previous anchor is back,
        which still verifies (it names an older row of the same chain).
        """
        data = {
            "format": _FORMAT,
            "head_hash": checkpoint.head_hash,
            "mac": self._mac(checkpoint.row_id, checkpoint.head_hash),
            "row_id": checkpoint.row_id,
        }
        directory = self.path.parent
        descriptor, temporary = tempfile.mkstemp(dir=directory, prefix=f".{self.path.name}.", suffix=".tmp")
        try:
            with os.fdopen(descriptor, "w", encoding="ascii") as handle:
                handle.write(json.dumps(data, sort_keys=True) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    def __repr__(self) -> str:
        """Describe the anchor without its keys."""
        return f"AuditAnchor(path={str(self.path)!r}, keys=<hidden>)"

    __str__ = __repr__

    def __reduce__(self) -> tuple[object, ...]:
        """Refuse pickling, which would copy the keys somewhere."""
        raise TypeError("AuditAnchor cannot be pickled")


def anchor_of(session: AsyncSession) -> AuditAnchor | None:
    """The anchor attached to ``session``'s sessionmaker, if any."""
    anchor = session.info.get(SESSION_INFO_KEY)
    return anchor if isinstance(anchor, AuditAnchor) else None
