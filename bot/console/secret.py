"""The key that signs console sessions: ``CONSOLE_SECRET_KEY``, else ``DATA_DIR/console.key`` (0600)."""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from storage.errors import StorageError

KEY_FILE_NAME = "console.key"
MIN_KEY_CHARS = 32


class ConsoleKeyError(StorageError):
    """The console secret key is too short, unreadable or readable by others."""


def load_or_create_secret(data_dir: Path, env_value: str | None) -> str:
    """Return ``env_value`` if set, else the key file's content (created once with 0600)."""
    if env_value is not None and env_value.strip():
        return _checked(env_value.strip(), "CONSOLE_SECRET_KEY")
    path = Path(data_dir) / KEY_FILE_NAME
    if not path.exists():
        _create(path)
    return _read(path)


def _checked(key: str, where: str) -> str:
    """Refuse keys shorter than ``MIN_KEY_CHARS``."""
    if len(key) < MIN_KEY_CHARS:
        raise ConsoleKeyError(f"{where}: the console secret key needs at least {MIN_KEY_CHARS} characters")
    return key


def _create(path: Path) -> None:
    """Write a new random key with mode 0600; a file created meanwhile by another process wins."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    with os.fdopen(descriptor, "w", encoding="ascii") as handle:
        handle.write(secrets.token_hex(32) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def _read(path: Path) -> str:
    """Read the key file after checking that only its owner can access it."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConsoleKeyError(f"{path}: cannot read the console key ({type(exc).__name__})") from None
    if mode & 0o077:
        raise ConsoleKeyError(f"{path}: mode is {mode:04o}; group/others must have no access (chmod 600)")
    return _checked(text, str(path))
