"""``export``: the research data set as CSV or JSON lines, audited (who, when, rows, sha256)."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys
import tempfile
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

from bot.cli.database import database_url, prepare_database
from bot.errors import BotError
from storage.audit_anchor import AuditAnchor
from storage.db import make_engine, make_sessionmaker
from storage.repositories.export import audited_export
from storage.settings import StorageSettings


def parse_moment(value: str, *, end_of_day: bool) -> datetime:
    """A UTC moment from ``YYYY-MM-DD`` (the day's start, or the next day's start) or ISO date-time."""
    try:
        if len(value) == 10:
            day = date.fromisoformat(value) + timedelta(days=1 if end_of_day else 0)
            return datetime.combine(day, time(), UTC)
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise BotError(f"{value!r} is not a date (YYYY-MM-DD) or an ISO date-time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def default_actor() -> str:
    """``cli:<login name>`` of whoever runs the command."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli:unknown"


async def _export(
    url: str, anchor: AuditAnchor, actor: str, window: tuple[datetime, datetime], fmt: str
) -> tuple[bytes, int, str]:
    """Build the file and commit its audit event (anchored)."""
    since, until = window
    engine = make_engine(url)
    try:
        async with anchor.attach(make_sessionmaker(engine)).begin() as session:
            return await audited_export(session, actor=actor, since=since, until=until, fmt=fmt)
    finally:
        await engine.dispose()


def _refuse_link(path: Path) -> None:
    """Raise BotError when ``path`` is a symbolic link (the export is never written through one)."""
    if path.is_symlink():
        raise BotError(f"--out {path} is a symbolic link; give the path of a regular file instead")


def _write_private(path: Path, content: bytes) -> None:
    """Write ``content`` to ``path`` readable by its owner only, replacing it atomically.

    The temporary file is created by ``mkstemp`` next to ``path`` (random name, O_EXCL, mode 0600), so a
    file or link planted there in advance is never opened; ``os.replace`` renames it over ``path`` and
    does not follow a link there either.
    """
    _refuse_link(path)
    try:
        descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise BotError(f"cannot write --out {path}: {exc.strerror}") from None
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except OSError as exc:
        Path(temporary).unlink(missing_ok=True)
        raise BotError(f"cannot write --out {path}: {exc.strerror}") from None


def export(args: argparse.Namespace) -> int:
    """Write the research rows of ``[since, until]`` and print a summary line to stderr."""
    since, until = parse_moment(args.since, end_of_day=False), parse_moment(args.until, end_of_day=True)
    if until <= since:
        raise BotError("--until must be after --since")
    if args.out:
        _refuse_link(Path(args.out))  # before the export is built and audited
    storage = StorageSettings()
    url = database_url(storage)
    prepare_database(url)
    anchor = AuditAnchor.for_storage(storage)
    actor = args.actor or default_actor()
    content, rows, digest = asyncio.run(_export(url, anchor, actor, (since, until), args.fmt))
    if args.out:
        _write_private(Path(args.out), content)
    else:
        sys.stdout.buffer.write(content)
        sys.stdout.flush()
    print(f"exported {rows} rows ({args.fmt}, sha256 {digest})", file=sys.stderr)
    return 0
