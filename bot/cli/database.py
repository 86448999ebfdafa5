"""The commands' database: DATABASE_URL or a SQLite file in DATA_DIR, checked and migrated at start."""

from __future__ import annotations

import asyncio

from storage.db import check_connection, default_sqlite_url, make_engine
from storage.migrate import upgrade_async
from storage.settings import StorageSettings


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
