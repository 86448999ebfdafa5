"""The console on data the real bot made: questions sent to the bot through the Bot API stand-in.

The bot records the danger sign with the question (``questions.red_flag`` and an audit event
``question.red_flag`` in the same transaction); the red-flag filter, the conversation page and
the statistics read it from there. Nothing here writes a row the console reads.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.console import create_app
from bot.telegram import texts
from storage.models import Question
from storage.repositories.audit import verify_chain
from tests.console.helpers import REVIEWER, SECRET, audit_rows, client_for, login
from tests.support.consent import give_consent
from tests.support.stack import Stack, inprocess_worker
from tests.support.telegram_stub import BOT_USERNAME, says

ADA, BEN, CHI = 2001, 2002, 2003
GROUP = -100888
DANGER = "My neighbour collapsed and is not breathing, what do I do"
HARMLESS = "What dose of paracetamol for a child of 12 kg"


async def _ask(stack: Stack, user: int, text: str) -> None:
    """Send ``text`` in private and wait until the bot has queued it."""
    before = len(stack.stub.calls)
    stack.stub.push_message(text, user_id=user)
    await stack.stub.wait_for("sendMessage", says("in the queue", user), since=before)


async def _questions(sessionmaker: async_sessionmaker[AsyncSession]) -> dict[str, Question]:
    """The recorded questions by their text (both users agreed to research, so text is kept)."""
    async with sessionmaker() as session:
        rows = (await session.execute(select(Question))).scalars()
        return {str(question.text): question for question in rows}


async def _pages(sessionmaker: async_sessionmaker[AsyncSession], *paths: str) -> list[str]:
    """The console pages at ``paths``, read by a logged-in reviewer."""
    app = create_app(sessionmaker, secret_key=SECRET, https=False)
    async with client_for(app) as http:
        assert (await login(http, *REVIEWER)).status_code == 303
        return [(await http.get(path)).text for path in paths]


async def test_the_console_shows_the_danger_sign_the_bot_recorded(
    sessionmaker: async_sessionmaker[AsyncSession], accounts: None, stack: Stack, running_bot: Any
) -> None:
    # Accounts first (plain rows, as before keying), then the bot's keyed rows; the console and the
    # check below use the bot's audit key, as deployed (a key-less writer after keyed rows is flagged).
    stack.audit_anchor().attach(sessionmaker)
    await give_consent(stack.stub, ADA)
    await give_consent(stack.stub, BEN)
    before = len(stack.stub.calls)
    await _ask(stack, ADA, DANGER)
    await _ask(stack, BEN, HARMLESS)
    async with inprocess_worker(stack):  # the real llama.cpp worker answers both
        await stack.stub.wait_for("sendMessage", says(texts.REMINDER), since=before, count=2, timeout=60)
    questions = await _questions(sessionmaker)
    danger, harmless = questions[DANGER], questions[HARMLESS]
    assert (danger.red_flag, harmless.red_flag) == ("en:not_breathing", None)
    (event,) = await audit_rows(sessionmaker, "question.red_flag")
    assert event.subject == danger.id and json.loads(event.payload) == {"rule": "en:not_breathing"}
    async with sessionmaker() as session:
        assert await verify_chain(session) > 0

    flagged, unflagged, listing, detail, stats = await _pages(
        sessionmaker,
        "/conversations?flag=yes",
        "/conversations?flag=no",
        "/conversations",
        f"/conversations/{danger.id}",
        "/stats",
    )
    assert danger.id in flagged and harmless.id not in flagged and "1 conversation ·" in flagged
    assert harmless.id in unflagged and danger.id not in unflagged
    assert "red flag: en:not_breathing" in listing and listing.count("red flag:") == 1
    assert '<span class="tag flag">en:not_breathing</span>' in detail
    assert "<dt>Red flags</dt><dd>en:not_breathing 1</dd>" in stats


async def test_a_question_without_a_danger_sign_leaves_the_red_flag_views_empty(
    stack: Stack, running_bot: Any, sessionmaker: async_sessionmaker[AsyncSession], accounts: None
) -> None:
    await give_consent(stack.stub, BEN)
    await _ask(stack, BEN, HARMLESS)
    (question,) = (await _questions(sessionmaker)).values()
    flagged, stats = await _pages(sessionmaker, "/conversations?flag=yes", "/stats")
    assert question.id not in flagged and "0 conversations" in flagged
    assert "<dt>Red flags</dt><dd>none</dd>" in stats
    assert await audit_rows(sessionmaker, "question.red_flag") == []


async def test_a_group_question_held_for_consent_keeps_its_danger_sign(
    stack: Stack, running_bot: Any, sessionmaker: async_sessionmaker[AsyncSession], accounts: None
) -> None:
    stub = stack.stub
    group = {"chat_id": GROUP, "chat_type": "supergroup", "title": "Team"}
    stub.set_chat_member_status(GROUP, ADA, "administrator")
    await give_consent(stack.stub, ADA)
    before = len(stub.calls)
    stub.push_command("/enable", mention_bot=True, user_id=ADA, **group)
    await stub.wait_for("sendMessage", says(texts.GROUP_ENABLED, GROUP), since=before)
    stub.push_command("/ask", DANGER, user_id=CHI, **group)  # Chi has not consented yet: held
    await stub.wait_for("sendMessage", says(f"t.me/{BOT_USERNAME}?start=consent", GROUP), since=before)
    assert await _questions(sessionmaker) == {}
    stub.push_command("/start", "consent", user_id=CHI)
    await give_consent(stack.stub, CHI)
    await stub.wait_for("sendMessage", says(texts.GROUP_QUESTION_RELEASED, CHI), since=before)
    await stub.wait_for("sendMessage", says("in the queue", GROUP), since=before)
    (question,) = (await _questions(sessionmaker)).values()
    assert (question.chat_type, question.red_flag) == ("supergroup", "en:not_breathing")
    (flagged,) = await _pages(sessionmaker, "/conversations?flag=yes&chat=group")
    assert question.id in flagged and "red flag: en:not_breathing" in flagged
