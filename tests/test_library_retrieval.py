"""Retrieval from the guideline library: questions in other words find their passage; nothing
unrelated is retrieved; limits; removal; every change audited with the document's sha256."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.flows.library import RetrievalLimits, retrieve
from bot.library.importer import file_sha256, import_file
from storage.models import AuditEvent, LibraryPassage
from storage.repositories.audit import verify_chain
from storage.repositories.library import library_version, remove_document

Sessions = async_sessionmaker[AsyncSession]
LIBRARY = Path(__file__).parent / "support" / "library"
PAIRS: list[tuple[str, str]] = [tuple(pair) for pair in json.loads((LIBRARY / "pairs.json").read_text())]
UNRELATED = [
    "What is the capital of France?",
    "Who won the football match yesterday?",
    "How do I fix my car engine?",
    "Tell me a joke about cats",
]


async def _library(sessionmaker: Sessions) -> int:
    async with sessionmaker.begin() as session:
        return (await import_file(session, LIBRARY / "guidelines.md")).document.id


async def test_questions_in_other_words_find_their_passage_first(sessionmaker: Sessions) -> None:
    await _library(sessionmaker)
    first = in_top3 = 0
    async with sessionmaker() as session:
        for question, section in PAIRS:
            sections = [p.section for p in (await retrieve(session, question, "en")).passages]
            first += bool(sections) and sections[0] == section
            in_top3 += section in sections
    assert len(PAIRS) == 15
    assert in_top3 == len(PAIRS), f"recall@3 {in_top3}/{len(PAIRS)}"
    assert first == len(PAIRS), f"recall@1 {first}/{len(PAIRS)}"


@pytest.mark.parametrize("question", UNRELATED)
async def test_unrelated_questions_retrieve_nothing(sessionmaker: Sessions, question: str) -> None:
    await _library(sessionmaker)
    async with sessionmaker() as session:
        grounding = await retrieve(session, question, "en")
    assert grounding.passages == ()
    assert grounding.library_version  # there is a library: the answer says it is not from it


async def test_an_empty_library_has_no_version_and_retrieves_nothing(sessionmaker: Sessions) -> None:
    async with sessionmaker() as session:
        grounding = await retrieve(session, PAIRS[0][0], "en")
    assert (grounding.library_version, grounding.passages) == ("", ())


async def test_top_k_token_budget_and_threshold(sessionmaker: Sessions) -> None:
    await _library(sessionmaker)
    question = "Clean water for a wound, a burn or a snake bite?"
    async with sessionmaker() as session:
        three = await retrieve(session, question, "en")
        one = await retrieve(session, question, "en", RetrievalLimits(top_k=1))
        small = await retrieve(session, question, "en", RetrievalLimits(max_tokens=60))
        strict = await retrieve(session, question, "en", RetrievalLimits(min_match=0.9))
    assert len(three.passages) == 3
    assert one.passages == three.passages[:1]
    assert sum(len(p.text) for p in small.passages) <= 60 * 4
    assert len(small.passages) < 3
    assert strict.passages == ()


async def test_changes_are_audited_with_sha256_and_removal_empties_the_index(sessionmaker: Sessions) -> None:
    document_id = await _library(sessionmaker)
    async with sessionmaker() as session:
        version = await library_version(session)
    async with sessionmaker.begin() as session:
        await remove_document(session, document_id)
    async with sessionmaker() as session:
        grounding = await retrieve(session, PAIRS[0][0], "en")
        left = await session.scalar(select(func.count()).select_from(LibraryPassage))
        if (await session.connection()).dialect.name == "sqlite":
            left += await session.scalar(text("SELECT count(*) FROM library_fts"))
        events = (await session.execute(select(AuditEvent).order_by(AuditEvent.id))).scalars().all()
        assert await verify_chain(session) == len(events)
    assert grounding.passages == ()
    assert left == 0
    sha256 = file_sha256(LIBRARY / "guidelines.md")
    changes = [(e.event, json.loads(e.payload)) for e in events]
    assert [name for name, _ in changes] == ["library.added", "library.removed"]
    assert all(payload["sha256"] == sha256 for _, payload in changes)
    assert changes[0][1]["library_version"] == version
    assert changes[1][1]["library_version"] == ""
