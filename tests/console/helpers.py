"""Helpers of the review-console tests: what was seeded, logging in, audit reads."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
import uvicorn
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.applications import Starlette

from bot.console.serving import server_config
from storage.models import AuditEvent

SECRET = "k" * 48
REVIEWER = ("rita", "reviewer-password-1")
ADMIN = ("adam", "admin-password-123")
CLINICIAN = ("cleo", "clinician-password-1")
CSRF_RE = re.compile(r'name="csrf" value="([^"]+)"')


@dataclass(frozen=True)
class Seeded:
    """What the real bot made (tests/console/seeding.py): research question ids (oldest first, the
    newest asked in a French group), the question of a user who declined research, the researcher's
    pseudonym, the research answers by question id and the model's sha256."""

    research_ids: list[str]
    private_id: str
    pseudonym: str
    answers: dict[str, str] = field(default_factory=dict)
    model_sha256: str = ""


def client_for(app: Starlette, base_url: str = "http://console.test") -> httpx.AsyncClient:
    """An HTTP client talking to ``app`` in-process."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base_url)


def csrf_of(html: str) -> str:
    """The CSRF token in a page's form."""
    match = CSRF_RE.search(html)
    assert match, "no CSRF field in the page"
    return match.group(1)


async def login(client: httpx.AsyncClient, name: str, password: str) -> httpx.Response:
    """Fill the login form as a browser would."""
    page = await client.get("/login")
    form = {"csrf": csrf_of(page.text), "name": name, "password": password, "next": "/conversations"}
    return await client.post("/login", data=form)


async def audit_rows(factory: async_sessionmaker[AsyncSession], event: str) -> list[AuditEvent]:
    """The audit events called ``event``, oldest first."""
    async with factory() as session:
        query = select(AuditEvent).where(AuditEvent.event == event).order_by(AuditEvent.id)
        return list((await session.execute(query)).scalars())


async def audit_count(factory: async_sessionmaker[AsyncSession]) -> int:
    """How many audit events exist."""
    async with factory() as session:
        return int((await session.execute(select(func.count()).select_from(AuditEvent))).scalar_one())


def sha256(content: bytes) -> str:
    """Hex sha256 of ``content``."""
    return hashlib.sha256(content).hexdigest()


@contextlib.asynccontextmanager
async def served(app: Starlette, trusted_proxies: tuple[str, ...] = ()) -> AsyncIterator[str]:
    """``app`` behind a real uvicorn on 127.0.0.1 (configured as ``admin`` configures it); its base URL.

    The socket listens before uvicorn starts, so requests wait in its backlog: no start-up polling.
    """
    listener = socket.create_server(("127.0.0.1", 0))
    server = uvicorn.Server(server_config(app, "127.0.0.1", 0, trusted_proxies))
    task = asyncio.create_task(server.serve(sockets=[listener]))
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        server.should_exit = True
        await task
        listener.close()
