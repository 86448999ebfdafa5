"""Review-console fixtures: accounts, seeded conversations, the app and logged-in HTTP clients."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.applications import Starlette

from bot.console import create_app
from storage.accounts import add_account
from tests.console.helpers import ADMIN, REVIEWER, SECRET, Seeded, client_for, login, seed


@pytest.fixture
async def accounts(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    """A reviewer and an admin."""
    async with sessionmaker.begin() as session:
        await add_account(session, *REVIEWER, "reviewer")
        await add_account(session, *ADMIN, "admin")


@pytest.fixture
async def seeded(sessionmaker: async_sessionmaker[AsyncSession]) -> Seeded:
    """Three research conversations and one kept without research consent."""
    return await seed(sessionmaker)


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
