"""HMAC-SHA256 pseudonyms of Telegram ids under a key kept outside the database.

The key is the UTF-8 bytes of the key text (stripped), whether it comes from ``PSEUDONYM_KEY`` or
from ``<data_dir>/pseudonym.key`` (which is created with 32 random bytes written as hex).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
from pathlib import Path

from storage.errors import PseudonymKeyError

KEY_FILE_NAME = "pseudonym.key"
MIN_KEY_BYTES = 32
ENV_SOURCE = "$PSEUDONYM_KEY"


class Pseudonymizer:
    """Turns Telegram user and chat ids into stable hex pseudonyms; never reveals its key."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        """Keep ``key``; use ``from_key`` or ``load_or_create`` rather than this directly."""
        self._key = key

    @classmethod
    def from_key(cls, key: bytes) -> Pseudonymizer:
        """Build from raw key bytes (at least 32)."""
        _check_length(key, "<given key>")
        return cls(key)

    @classmethod
    def load_or_create(cls, data_dir: Path, key: str | None) -> Pseudonymizer:
        """Use ``key`` if given, else read (or first create) ``<data_dir>/pseudonym.key``."""
        if key is not None:
            material = key.strip().encode("utf-8")
            _check_length(material, ENV_SOURCE)
            return cls(material)
        return cls(_load_or_create_file(Path(data_dir) / KEY_FILE_NAME))

    def user(self, telegram_user_id: int) -> str:
        """Return the pseudonym of a Telegram user id."""
        return self._digest("user", telegram_user_id)

    def chat(self, telegram_chat_id: int) -> str:
        """Return the pseudonym of a Telegram chat id."""
        return self._digest("chat", telegram_chat_id)

    def derive_key(self, purpose: str) -> bytes:
        """A 32-byte key for ``purpose`` (e.g. "audit-anchor"), derived from the key; the key stays hidden."""
        return hmac.new(self._key, f"derive:{purpose}".encode("ascii"), hashlib.sha256).digest()

    def _digest(self, domain: str, value: int) -> str:
        """HMAC-SHA256 hex of ``<domain>:<value>``."""
        message = f"{domain}:{int(value)}".encode("ascii")
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def __repr__(self) -> str:
        """Describe the object without the key."""
        return "Pseudonymizer(key=<hidden>)"

    __str__ = __repr__

    def __reduce__(self) -> tuple[object, ...]:
        """Refuse pickling, which would copy the key somewhere."""
        raise TypeError("Pseudonymizer cannot be pickled")


def _check_length(material: bytes, where: str) -> None:
    """Raise PseudonymKeyError when the key is shorter than 32 bytes."""
    if len(material) < MIN_KEY_BYTES:
        raise PseudonymKeyError(where, f"key is {len(material)} bytes, at least {MIN_KEY_BYTES} are required")


def _load_or_create_file(path: Path) -> bytes:
    """Read the key file, creating it first if it does not exist."""
    if not path.exists():
        _create_key_file(path)
    return _read_key_file(path)


def _create_key_file(path: Path) -> None:
    """Write a new random key atomically with mode 0600; keep an existing file untouched."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    try:
        _write_new_file(temporary, secrets.token_hex(MIN_KEY_BYTES) + "\n")
        os.link(temporary, path)  # atomic: fails if another process created the key first
    except FileExistsError:
        pass
    except OSError as exc:
        raise PseudonymKeyError(str(path), f"cannot create key file: {exc.strerror}") from None
    finally:
        temporary.unlink(missing_ok=True)


def _write_new_file(path: Path, content: str) -> None:
    """Create ``path`` exclusively with mode 0600 and write ``content`` durably."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="ascii") as handle:
        handle.write(content)
        handle.flush()
        os.fsync(handle.fileno())


def _read_key_file(path: Path) -> bytes:
    """Read the key file after checking that only its owner can access it."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise PseudonymKeyError(
                str(path), f"file mode is {mode:04o}; group/others must have no access (chmod 600)"
            )
        material = path.read_bytes().strip()
    except OSError as exc:
        raise PseudonymKeyError(str(path), f"cannot read key file: {exc.strerror}") from None
    _check_length(material, str(path))
    return material
