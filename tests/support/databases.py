"""Database fixtures: every storage test runs on SQLite and on PostgreSQL.

PostgreSQL comes from TEST_POSTGRES_URL, else postgres@127.0.0.1:5432/test. When it cannot be
reached the postgres tests are skipped, except under CI (env CI set), where they fail.
Each test gets a fresh database: a new SQLite file, or a new PostgreSQL database that is
dropped afterwards.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import NullPool

from storage.db import (
    check_connection,
    default_sqlite_url,
    make_engine,
    make_sessionmaker,
    normalize_url,
)
from storage.errors import DatabaseUnavailableError
from storage.migrate import upgrade_async
from storage.models import Answer, Base

DEFAULT_POSTGRES_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"


async def _reachable(url: str) -> str | None:
    """Return None if ``url`` answers ``SELECT 1``, else the reason it does not."""
    engine = make_engine(url)
    try:
        await check_connection(engine, url, timeout=5.0)
    except DatabaseUnavailableError as exc:
        return str(exc)
    finally:
        await engine.dispose()
    return None


def _probe(url: str) -> str | None:
    """Run the reachability check on a private event loop in a worker thread."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, _reachable(url)).result()


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """URL of a reachable PostgreSQL maintenance database (skip, or fail under CI, if none)."""
    url = normalize_url(os.environ.get("TEST_POSTGRES_URL") or DEFAULT_POSTGRES_URL)
    problem = _probe(url)
    if problem is None:
        return url
    if os.environ.get("CI"):
        pytest.fail(f"PostgreSQL is required in CI: {problem}")
    pytest.skip(f"PostgreSQL not reachable: {problem}")


def _admin_engine(url: str) -> AsyncEngine:
    """An AUTOCOMMIT engine for CREATE/DROP DATABASE."""
    return create_async_engine(url, isolation_level="AUTOCOMMIT", poolclass=NullPool)


@pytest.fixture
async def fresh_postgres_url(postgres_url: str) -> AsyncIterator[str]:
    """URL of a new, empty PostgreSQL database, dropped after the test."""
    name = f"test_{uuid.uuid4().hex}"
    admin = _admin_engine(postgres_url)
    try:
        async with admin.connect() as connection:
            await connection.execute(text(f'CREATE DATABASE "{name}"'))
        yield make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
    finally:
        async with admin.connect() as connection:
            await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """URL of a fresh empty database, once for SQLite and once for PostgreSQL."""
    if request.param == "sqlite":
        return default_sqlite_url(tmp_path)
    return str(request.getfixturevalue("fresh_postgres_url"))


@pytest.fixture
async def migrated_db_url(db_url: str) -> str:
    """``db_url`` upgraded to the newest migration."""
    await upgrade_async(db_url)
    return db_url


@pytest.fixture
async def sessionmaker(migrated_db_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """A session factory on the migrated database; its engine is disposed afterwards."""
    engine = make_engine(migrated_db_url)
    try:
        yield make_sessionmaker(engine)
    finally:
        await engine.dispose()


async def every_row(sessionmaker: async_sessionmaker[AsyncSession]) -> str:
    """Every row of every table, as text (to look for a text anywhere in the database)."""
    dumped: list[str] = []
    async with sessionmaker() as session:
        for table in Base.metadata.sorted_tables:
            dumped += [repr(tuple(row)) for row in (await session.execute(select(table))).all()]
    return "\n".join(dumped)


async def recorded_answers(sessionmaker: async_sessionmaker[AsyncSession]) -> list[Answer]:
    """The answers recorded so far, oldest first."""
    async with sessionmaker() as session:
        return list((await session.execute(select(Answer).order_by(Answer.id))).scalars())
