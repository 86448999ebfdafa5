"""Helpers of the review-console tests: seeding through the bot's repositories, logging in, audit reads."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import uvicorn
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.applications import Starlette

from bot.console.serving import server_config
from storage.field import record_feedback, record_reason
from storage.models import AuditEvent
from storage.repository.consent import record_consent
from storage.repository.questions import record_answer, record_question
from storage.repository.users import get_or_create_user

SECRET = "k" * 48
REVIEWER = ("rita", "reviewer-password-1")
ADMIN = ("adam", "admin-password-123")
BASE = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
CSRF_RE = re.compile(r'name="csrf" value="([^"]+)"')


@dataclass(frozen=True)
class Seeded:
    """What ``seed`` wrote: the research question ids (oldest first) and a non-research one."""

    research_ids: list[str]
    private_id: str
    pseudonym: str


async def _consent(session: AsyncSession, pseudonym: str, language: str, research: bool) -> None:
    """A user with service consent and research granted or declined."""
    user = await get_or_create_user(session, pseudonym, language)
    common = {"text_version": "v1", "text_sha256": "a" * 64, "language": language, "source": "button"}
    await record_consent(session, user, scope="service", new_value="granted", **common)
    await record_consent(
        session, user, scope="research", new_value="granted" if research else "declined", **common
    )


async def add_conversation(
    session: AsyncSession,
    *,
    question_id: str,
    pseudonym: str,
    text: str,
    research: bool = True,
    language: str = "en",
    chat_type: str = "private",
    received_at: datetime = BASE,
) -> None:
    """One question and its answer through the bot's own repository functions."""
    user = await get_or_create_user(session, pseudonym, language)
    await record_question(
        session,
        question_id=question_id,
        user=user,
        chat_pseudonym="c" * 64,
        chat_type=chat_type,
        language=language,
        text=text,
        research=research,
        received_at=received_at,
    )
    await record_answer(
        session,
        question_id=question_id,
        text=f"Answer to: {text}",
        status="ok",
        model_sha256="e27bcb7b21b4a6bc728533ca0352ae9d003578b4c08ce0c4973b5f21a8a851b3",
        prompt_version="p1",
        prompt_tokens=300,
        completion_tokens=40,
        taken_at=received_at + timedelta(seconds=2),
        first_token_at=received_at + timedelta(seconds=3),
        finished_at=received_at + timedelta(seconds=8),
        sent_at=received_at + timedelta(seconds=8, milliseconds=200),
        worker="w1",
        stop_reason="eos",
    )


async def seed(factory: async_sessionmaker[AsyncSession], research_count: int = 3) -> Seeded:
    """Research conversations in English private chats plus a French group one, and a non-research one."""
    researcher, private = "1" * 64, "2" * 64
    ids = [f"q{index:04d}research" for index in range(research_count)]
    async with factory.begin() as session:
        await _consent(session, researcher, "en", research=True)
        await _consent(session, private, "fr", research=False)
        for index, question_id in enumerate(ids):
            french = index == research_count - 1
            await add_conversation(
                session,
                question_id=question_id,
                pseudonym=researcher,
                text=f"How to treat fever number {index}?",
                language="fr" if french else "en",
                chat_type="group" if french else "private",
                received_at=BASE + timedelta(hours=index),
            )
        await add_conversation(
            session, question_id="q9999private", pseudonym=private, text="secret", research=False
        )
    return Seeded(ids, "q9999private", researcher)


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


async def add_feedback(factory: async_sessionmaker[AsyncSession], seeded: Seeded) -> None:
    """👎 with a reason on the first question, 👍 on the second (red flags come from the real bot)."""
    first, second = seeded.research_ids[0], seeded.research_ids[1]
    async with factory.begin() as session:
        await record_feedback(session, first, "down")
        await record_reason(session, first, "too vague")
        await record_feedback(session, second, "up")


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
