"""``export``: the research data set as CSV or JSON lines, audited (who, when, rows, sha256)."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

from bot.cli.common import database_url, prepare_database
from bot.errors import BotError
from storage.db import make_engine, make_sessionmaker
from storage.research_export import audited_export
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


async def _export(url: str, actor: str, since: datetime, until: datetime, fmt: str) -> tuple[bytes, int, str]:
    """Build the file and commit its audit event."""
    engine = make_engine(url)
    try:
        async with make_sessionmaker(engine).begin() as session:
            return await audited_export(session, actor=actor, since=since, until=until, fmt=fmt)
    finally:
        await engine.dispose()


def _write_private(path: Path, content: bytes) -> None:
    """Write ``content`` to ``path`` readable by its owner only (replacing it atomically)."""
    temporary = path.with_name(f".{path.name}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(content)
    os.replace(temporary, path)


def export(args: argparse.Namespace) -> int:
    """Write the research rows of ``[since, until]`` and print a summary line to stderr."""
    since, until = parse_moment(args.since, end_of_day=False), parse_moment(args.until, end_of_day=True)
    if until <= since:
        raise BotError("--until must be after --since")
    url = database_url(StorageSettings())
    prepare_database(url)
    content, rows, digest = asyncio.run(_export(url, args.actor or default_actor(), since, until, args.fmt))
    if args.out:
        _write_private(Path(args.out), content)
    else:
        sys.stdout.buffer.write(content)
        sys.stdout.flush()
    print(f"exported {rows} rows ({args.fmt}, sha256 {digest})", file=sys.stderr)
    return 0
