"""Errors raised by the storage package; each carries what it is about."""

from __future__ import annotations


class StorageError(Exception):
    """Base class of every error the storage package raises on purpose."""


class DatabaseUnavailableError(StorageError):
    """The database cannot be reached; ``url`` is the URL with its password hidden."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"cannot reach the database at {url}: {reason}")
        self.url = url


class RedisUnavailableError(StorageError):
    """Redis cannot be reached; ``url`` is the URL with its password hidden."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"cannot reach Redis at {url}: {reason}")
        self.url = url


class PseudonymKeyError(StorageError):
    """The pseudonym key is missing, unreadable or too short; ``path`` says where it was looked for."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"pseudonym key at {path}: {reason}")
        self.path = path


class BadQueueMessageError(StorageError):
    """A stream entry does not match the queue schema; ``entry_id`` says which."""

    def __init__(self, entry_id: str, reason: str) -> None:
        super().__init__(f"stream entry {entry_id} is not a valid message: {reason}")
        self.entry_id = entry_id


class AuditChainError(StorageError):
    """The audit chain is broken at row ``row_id``."""

    def __init__(self, row_id: int, reason: str) -> None:
        super().__init__(f"audit chain broken at row {row_id}: {reason}")
        self.row_id = row_id


class AuditAnchorError(AuditChainError):
    """The chain does not reach its anchor (rows deleted or rewritten), or the anchor file is bad.

    ``row_id`` is the anchored row when the chain is at fault, 0 when the anchor file itself is.
    """

    def __init__(self, reason: str, row_id: int = 0) -> None:
        StorageError.__init__(self, f"audit chain broken at row {row_id}: {reason}" if row_id else reason)
        self.row_id = row_id


class UnknownUserError(StorageError):
    """No user row exists for ``pseudonym``."""

    def __init__(self, pseudonym: str) -> None:
        super().__init__(f"no user with pseudonym {pseudonym[:12]}…")
        self.pseudonym = pseudonym


class UnknownQuestionError(StorageError):
    """No question row exists with ``question_id``."""

    def __init__(self, question_id: str) -> None:
        super().__init__(f"no question with id {question_id}")
        self.question_id = question_id


class AofRewriteError(StorageError):
    """Redis could not rewrite its append-only file (refused, failed or too slow)."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"Redis did not rewrite its append-only file: {reason}")
