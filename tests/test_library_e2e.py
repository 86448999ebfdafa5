"""Grounded answers end to end: the real bot, Redis, database and a llama.cpp worker; Telegram stand-in.

The answer carries the bot's Sources part, /sources shows the passage, an unrelated question is
said not to come from the guidelines, the audit log and the export name the passage ids, and
erasure leaves the library (which holds no user data) as it was. A follow-up is retrieved with its
conversation's earlier question. /help and the command menu list /sources in every language.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.library.importer import import_file
from bot.telegram import texts
from bot.telegram.i18n import LANGUAGES, t
from storage.models import AuditEvent, LibraryPassage, Question
from storage.pseudonym import Pseudonymizer
from storage.repositories.audit import verify_chain
from storage.repositories.export import export_rows
from tests.support.consent import give_consent
from tests.support.stack import PSEUDONYM_KEY, Stack, inprocess_worker
from tests.support.telegram_stub import says
from tests.test_e2e import _ask

Sessions = async_sessionmaker[AsyncSession]
USER = 5_550_131
GROUNDED = "How much ORS should I give a toddler who is a bit dehydrated from loose stools?"
UNRELATED = "What is the capital of France?"
PNEUMONIA = "What amoxicillin dose for an infant with pneumonia and fast breathing?"
ALLERGY = "And if she is allergic to penicillin?"  # no word of it is in the guidelines
GUIDELINES = Path(__file__).parent / "support" / "library" / "guidelines.md"


async def _command(stack: Stack, command: str, expect: str) -> str:
    """Send a command; the text of the reply containing ``expect``."""
    before = len(stack.stub.calls)
    stack.stub.push_command(command, user_id=USER)
    calls = await stack.stub.wait_for("sendMessage", says(expect), since=before)
    return str(calls[-1].params["text"])


async def _library_rows(session: AsyncSession) -> list[tuple[Any, ...]]:
    """Every row of the library's tables (and the SQLite index), to compare before and after."""
    rows = [tuple(r) for r in (await session.execute(text("SELECT * FROM library_documents"))).all()]
    rows += [tuple(r) for r in (await session.execute(text("SELECT * FROM library_passages"))).all()]
    if (await session.connection()).dialect.name == "sqlite":
        rows += [tuple(r) for r in (await session.execute(text("SELECT rowid, * FROM library_fts"))).all()]
    return sorted(rows, key=repr)


async def test_grounded_answer_sources_audit_export_and_erasure(
    stack: Stack, running_bot: Any, sessionmaker: Sessions
) -> None:
    stack.audit_anchor().attach(sessionmaker)  # write and verify as the bot does
    async with sessionmaker.begin() as session:
        await import_file(session, GUIDELINES)
    async with sessionmaker() as session:
        passage = (
            await session.execute(
                select(LibraryPassage).where(LibraryPassage.section == "Diarrhoea › Some dehydration")
            )
        ).scalar_one()
        library = await _library_rows(session)
    await give_consent(stack.stub, USER, "both")
    async with inprocess_worker(stack):
        _, grounded = await _ask(stack, GROUNDED, user=USER)
        shown = await _command(stack, "/sources", texts.SOURCES_INTRO)
        _, unrelated = await _ask(stack, UNRELATED, user=USER)
    answer = str(grounded.params["text"])
    assert f"{texts.SOURCES_HEADING}\n[1] Field Guideline Sample — Diarrhoea › Some dehydration" in answer
    assert answer.index(texts.SOURCES_HEADING) < answer.index(texts.REMINDER)  # after the model's text
    assert "[1] Field Guideline Sample — Diarrhoea › Some dehydration" in shown
    assert "Give oral rehydration salts (ORS) over four hours" in shown
    other = str(unrelated.params["text"])
    assert texts.NOT_FROM_LIBRARY in other and texts.SOURCES_HEADING not in other
    assert texts.SOURCES_NONE in await _command(stack, "/sources", texts.SOURCES_NONE)

    async with sessionmaker() as session:
        questions = {q.text: q for q in (await session.execute(select(Question))).scalars()}
        received = [
            json.loads(e.payload)
            for e in (
                await session.execute(select(AuditEvent).where(AuditEvent.event == "question.received"))
            ).scalars()
        ]
        now = datetime.now(UTC)
        exported = await export_rows(session, now - timedelta(hours=1), now + timedelta(hours=1))
    version = questions[GROUNDED].library_version
    assert version and questions[UNRELATED].library_version == version
    assert questions[GROUNDED].passage_ids.split(",")[0] == str(passage.id)
    assert questions[UNRELATED].passage_ids is None
    assert received[0]["passage_ids"][0] == passage.id and received[0]["library_version"] == version
    assert received[1]["passage_ids"] == [] and received[1]["library_version"] == version
    rows = {row["question_text"]: row for row in exported}
    assert rows[GROUNDED]["passage_ids"] == questions[GROUNDED].passage_ids
    assert rows[GROUNDED]["library_version"] == version

    await _command(stack, "/forget", "I erased everything about you")
    async with sessionmaker() as session:
        assert await _library_rows(session) == library  # erasure does not touch the library
        assert {q.passage_ids for q in (await session.execute(select(Question))).scalars()} == {None}
        assert await verify_chain(session) > 0
    stored = repr(library)
    pseudonym = Pseudonymizer.from_key(PSEUDONYM_KEY.encode()).user(USER)
    for user_data in (GROUNDED, UNRELATED, str(USER), pseudonym):  # the library holds no user data
        assert user_data not in stored


async def test_a_follow_up_whose_own_words_match_nothing_gets_the_conversations_source(
    stack: Stack, running_bot: Any, sessionmaker: Sessions
) -> None:
    async with sessionmaker.begin() as session:
        await import_file(session, GUIDELINES)
    await give_consent(stack.stub, USER, "both")
    pneumonia = f"{texts.SOURCES_HEADING}\n[1] Field Guideline Sample — Pneumonia"
    async with inprocess_worker(stack):
        _, first = await _ask(stack, PNEUMONIA, user=USER)
        _, follow_up = await _ask(stack, ALLERGY, user=USER)
        await _command(stack, "/new", texts.NEW_CONVERSATION)
        _, alone = await _ask(stack, ALLERGY, user=USER)
    assert pneumonia in str(first.params["text"])
    assert pneumonia in str(follow_up.params["text"])  # retrieved with the earlier question
    assert texts.NOT_FROM_LIBRARY in str(alone.params["text"])  # the same words, no conversation
    async with sessionmaker() as session:
        ordered = select(Question.passage_ids).order_by(Question.received_at)
        recorded = list((await session.execute(ordered)).scalars())
    assert recorded[0] and recorded[1] and recorded[0].split(",")[0] == recorded[1].split(",")[0]
    assert recorded[2] is None


async def test_help_and_command_menu_list_sources_in_every_language(stack: Stack, running_bot: Any) -> None:
    for language in LANGUAGES:
        before = len(stack.stub.calls)
        stack.stub.push_command("/help", user_id=USER, language_code=language)
        opening = says(t(texts.HELP, language)[:30])
        replies = await stack.stub.wait_for("sendMessage", opening, since=before)
        shown = str(replies[-1].params["text"])
        assert t(texts.SOURCES_HELP, language) in shown and "/sources – " in shown
        assert language == "en" or t(texts.SOURCES_HELP, language) != texts.SOURCES_HELP  # translated
        menu = dict(stack.stub.menus[("all_private_chats", "" if language == "en" else language)])
        assert menu["sources"] == t(texts.SOURCES_HELP, language).split(" – ", 1)[1]  # setMyCommands
        assert {"start", "help", "cancel", "forget"} <= set(menu)
