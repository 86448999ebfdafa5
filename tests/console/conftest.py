"""Review-console fixtures: accounts, the bot-made data set, the app and logged-in HTTP clients."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.applications import Starlette

from bot.console import create_app
from storage.audit_anchor import AuditAnchor
from storage.db import make_engine, make_sessionmaker
from storage.migrate import upgrade_async
from storage.pseudonym import Pseudonymizer
from storage.repositories.accounts import add_account
from tests.console.browser import add_user, admin_console, cli_env
from tests.console.helpers import ADMIN, CLINICIAN, REVIEWER, SECRET, Seeded, client_for, login
from tests.console.seeding import Template, clone, postgres_template, sqlite_template
from tests.support.stack import PSEUDONYM_KEY, Stack

__all__ = ["postgres_template", "sqlite_template"]  # session fixtures: the data set, made once per kind


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """The test's DATA_DIR (the ``stack`` fixture uses the same one)."""
    path = tmp_path / "data"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture
async def migrated_db_url(request: pytest.FixtureRequest, db_url: str, data_dir: Path) -> str:
    """``db_url`` migrated; for tests that ask for ``seeded``, a clone of the bot-made data set."""
    if "seeded" not in request.fixturenames:
        await upgrade_async(db_url)
        return db_url
    postgres = None if db_url.startswith("sqlite") else str(request.getfixturevalue("postgres_url"))
    template: Template = request.getfixturevalue(f"{'postgres' if postgres else 'sqlite'}_template")
    await clone(template, db_url, postgres)
    template.anchor_into(data_dir)
    return db_url


@pytest.fixture
async def sessionmaker(
    migrated_db_url: str, data_dir: Path
) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Sessions on the test database that key and anchor audit rows as the bot does (its PSEUDONYM_KEY)."""
    engine = make_engine(migrated_db_url)
    anchor = AuditAnchor.from_pseudonyms(data_dir, Pseudonymizer.from_key(PSEUDONYM_KEY.encode()))
    try:
        yield anchor.attach(make_sessionmaker(engine))
    finally:
        await engine.dispose()


@pytest.fixture
async def accounts(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    """A reviewer and an admin (as ``meditron-bot admin add-user`` makes them)."""
    async with sessionmaker.begin() as session:
        await add_account(session, *REVIEWER, "reviewer")
        await add_account(session, *ADMIN, "admin")


@pytest.fixture
def seeded(request: pytest.FixtureRequest, migrated_db_url: str) -> Seeded:
    """The bot-made data set this test's database is a clone of (see tests/console/seeding.py)."""
    kind = "sqlite" if migrated_db_url.startswith("sqlite") else "postgres"
    template: Template = request.getfixturevalue(f"{kind}_template")
    return template.seeded


@pytest.fixture
def app(sessionmaker: async_sessionmaker[AsyncSession], accounts: None) -> Starlette:
    """The console on the test database (plain HTTP)."""
    return create_app(sessionmaker, secret_key=SECRET, https=False)


@pytest.fixture
async def client(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    """An anonymous client of the console."""
    async with client_for(app) as http:
        yield http


@pytest.fixture
async def reviewer(client: httpx.AsyncClient) -> httpx.AsyncClient:
    """The client, logged in as the reviewer."""
    response = await login(client, *REVIEWER)
    assert response.status_code == 303, response.text
    return client


@pytest.fixture
async def admin(client: httpx.AsyncClient) -> httpx.AsyncClient:
    """The client, logged in as the admin."""
    response = await login(client, *ADMIN)
    assert response.status_code == 303, response.text
    return client


@pytest.fixture
async def clinician_console(stack: Stack, tmp_path: Path) -> AsyncIterator[str]:
    """`meditron-bot admin` on a free port, on the bot's data, with a clinician made by `admin add-user`."""
    env = cli_env(tmp_path, stack.db_url)
    env.update(REDIS_URL=stack.redis_url, QUEUE_NAMESPACE=stack.storage.queue_namespace)
    await add_user(env, CLINICIAN, "clinician")
    async with admin_console(env) as url:
        yield url
