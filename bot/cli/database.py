"""The commands' database: DATABASE_URL or a SQLite file in DATA_DIR, migrated at start, audited work."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from storage.audit_anchor import AuditAnchor
from storage.db import check_connection, default_sqlite_url, make_engine, make_sessionmaker
from storage.migrate import upgrade_async
from storage.settings import StorageSettings

T = TypeVar("T")


def database_url(storage: StorageSettings) -> str:
    """DATABASE_URL, or a SQLite file in the data directory."""
    if storage.database_url is not None:
        return storage.database_url.get_secret_value()
    return default_sqlite_url(storage.ensure_data_dir())


async def _prepare_database(url: str) -> None:
    """Check the database answers, then migrate it to the newest schema."""
    engine = make_engine(url)
    try:
        await check_connection(engine, url)
    finally:
        await engine.dispose()
    await upgrade_async(url)


def prepare_database(url: str) -> None:
    """Blocking form of the check-and-migrate step, for the commands."""
    asyncio.run(_prepare_database(url))


def migrated_database() -> str:
    """The commands' database URL, checked and migrated to the newest schema."""
    url = database_url(StorageSettings())
    prepare_database(url)
    return url


async def in_transaction(url: str, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run ``work`` in one committed transaction on ``url`` (audit rows keyed and anchored)."""
    engine = make_engine(url)
    anchor = AuditAnchor.for_storage(StorageSettings())
    try:
        async with anchor.attach(make_sessionmaker(engine)).begin() as session:
            return await work(session)
    finally:
        await engine.dispose()
