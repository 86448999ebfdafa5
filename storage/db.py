"""Engines and sessions for SQLite (default) and PostgreSQL (asyncpg); nothing connects at import.

SQLite transactions start with ``BEGIN IMMEDIATE``: a transaction takes the write lock when it
begins, so two writers can never both read the same state (e.g. the last audit hash) and then
both write. WAL mode keeps readers outside transactions unblocked; the busy timeout makes a second
process wait for the lock instead of failing.

Erased text must leave the files too: ``secure_delete`` zeroes freed space in the main file, and
:func:`checkpoint_wal` copies the write-ahead log into it and truncates the log to zero bytes. The
database file and its ``-wal`` and ``-shm`` files are readable by their owner only (SQLite gives the
other two the main file's mode).
"""

from __future__ import annotations

import asyncio
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from storage.errors import DatabaseUnavailableError
from storage.urls import redact_url

SQLITE_BUSY_TIMEOUT_MS = 30_000
CHECKPOINT_BUSY_TIMEOUT_MS = 2_000
SQLITE_SIDE_FILES = ("", "-wal", "-shm", "-journal")
_ASYNC_DRIVERS = {
    "postgres": "postgresql+asyncpg",
    "postgresql": "postgresql+asyncpg",
    "sqlite": "sqlite+aiosqlite",
}


def default_sqlite_url(data_dir: Path) -> str:
    """Return the URL of the SQLite file ``<data_dir>/meditron.db``."""
    return f"sqlite+aiosqlite:///{Path(data_dir) / 'meditron.db'}"


def normalize_url(url: str) -> str:
    """Give ``url`` its async driver (asyncpg, aiosqlite); libpq's ``sslmode`` becomes ``ssl``."""
    parsed = make_url(url)
    driver = _ASYNC_DRIVERS.get(parsed.drivername)
    if driver is not None:
        parsed = parsed.set(drivername=driver)
    if parsed.drivername == "postgresql+asyncpg" and "sslmode" in parsed.query:
        parsed = parsed.update_query_dict({"ssl": parsed.query["sslmode"]})
        parsed = parsed.difference_update_query(["sslmode"])
    return parsed.render_as_string(hide_password=False)


def make_engine(url: str) -> AsyncEngine:
    """Create an async engine for ``url``; SQLite gets WAL, foreign keys, busy timeout, BEGIN IMMEDIATE."""
    parsed = make_url(normalize_url(url))
    engine = create_async_engine(parsed, pool_pre_ping=True)
    if parsed.get_backend_name() == "sqlite":
        _configure_sqlite(engine)
    return engine


def _configure_sqlite(engine: AsyncEngine) -> None:
    """Install the connect and begin hooks that make SQLite safe for several processes."""
    event.listen(engine.sync_engine, "connect", _sqlite_on_connect)
    event.listen(engine.sync_engine, "begin", _sqlite_on_begin)


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    """Take over BEGIN from the driver; set secure delete, WAL, foreign keys and the busy timeout.

    The database's files lose any group and other permissions before the first read creates the
    ``-wal`` and ``-shm`` files (which SQLite gives the main file's mode).
    """
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA database_list")
        for _seq, name, filename in cursor.fetchall():
            if name == "main" and filename:
                restrict_sqlite_files(Path(filename))
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA secure_delete = ON")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA foreign_keys = ON")
    finally:
        cursor.close()


def restrict_sqlite_files(database: Path) -> None:
    """Remove group and other permissions from the database file and its side files that exist."""
    for suffix in SQLITE_SIDE_FILES:
        path = database.with_name(database.name + suffix)
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
            if mode & 0o077:
                os.chmod(path, mode & 0o700)
        except FileNotFoundError:
            continue


def _sqlite_on_begin(connection: Connection) -> None:
    """Start every SQLite transaction holding the write lock (BEGIN IMMEDIATE)."""
    if connection.get_execution_options().get("isolation_level") != "AUTOCOMMIT":
        connection.exec_driver_sql("BEGIN IMMEDIATE")


@dataclass(frozen=True)
class WalCheckpoint:
    """The result of ``PRAGMA wal_checkpoint(TRUNCATE)``: ``busy`` means it could not finish."""

    busy: bool
    frames: int
    wal_bytes_before: int


def sqlite_path(url: str | URL) -> Path | None:
    """The file of a SQLite URL (None for other databases, in-memory and ``file:`` URIs)."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return None
    database = parsed.database
    if parsed.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return None
    if database.startswith("file:"):
        return None
    return Path(database)


async def checkpoint_wal(engine: AsyncEngine) -> WalCheckpoint | None:
    """Copy a non-empty SQLite write-ahead log into the database file and truncate it to zero bytes.

    Returns None when there was nothing to do (not SQLite, or the ``-wal`` file is absent or empty).
    Readers still inside a transaction make it wait, at most CHECKPOINT_BUSY_TIMEOUT_MS; ``busy``
    says it gave up.
    """
    path = sqlite_path(engine.url)
    before = _wal_size(path) if path is not None else 0
    if not before:
        return None
    async with engine.connect() as connection:
        autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
        # While it waits for readers, new writers wait too: give up soon (the next run tries again).
        await autocommit.exec_driver_sql(f"PRAGMA busy_timeout = {CHECKPOINT_BUSY_TIMEOUT_MS}")
        try:
            row = (await autocommit.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")).one()
        finally:
            await autocommit.exec_driver_sql(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
    return WalCheckpoint(busy=bool(row[0]), frames=int(row[1]), wal_bytes_before=before)


def _wal_size(database: Path) -> int:
    """Bytes in the database's ``-wal`` file (0 when there is none)."""
    try:
        return database.with_name(database.name + "-wal").stat().st_size
    except FileNotFoundError:
        return 0


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Return a session factory whose objects stay usable after commit."""
    return async_sessionmaker(engine, expire_on_commit=False)


async def check_connection(engine: AsyncEngine, url: str, timeout: float = 10.0) -> None:
    """Run ``SELECT 1``; raise DatabaseUnavailableError (password hidden) when that fails."""
    problem = _sqlite_path_problem(url)
    if problem is not None:  # checked first: a failed aiosqlite open leaks its worker thread
        raise DatabaseUnavailableError(redact_url(url), problem)
    try:
        async with asyncio.timeout(timeout), engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
    except Exception as exc:  # any driver, OS or timeout error means "unavailable"
        raise DatabaseUnavailableError(redact_url(url), _reason(exc, url)) from None


def _sqlite_path_problem(url: str) -> str | None:
    """Say why a SQLite file URL cannot be opened (missing directory), or return None."""
    database = sqlite_path(url)
    if database is None:
        return None
    directory = database.parent
    if not directory.is_dir():
        return f"directory {directory} does not exist"
    return None


def _reason(exc: BaseException, url: str) -> str:
    """Describe ``exc`` in one line, with the URL's password removed if it appears."""
    message = str(exc).splitlines()[0] if str(exc) else ""
    password = _password(url)
    if password:
        message = message.replace(password, "***")
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def _password(url: str) -> str | None:
    """Return the password in ``url``, if any."""
    try:
        parsed: URL = make_url(url)
    except ArgumentError:
        return None
    return parsed.password if isinstance(parsed.password, str) else None
