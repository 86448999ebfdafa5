"""Retrieval from the guideline library: questions in other words find their passage; nothing
unrelated is retrieved; limits; removal; every change audited with the document's sha256; word
frequencies kept with the passages, and very common words left out of the index query; a
follow-up retrieved with its conversation's earlier question."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.flows.library import RetrievalLimits, context_of, index_query, retrieve
from bot.library.bench import synthetic_documents
from bot.library.importer import file_sha256, import_file
from bot.library.words import follows_on, stem, terms
from storage.db import make_engine, make_sessionmaker
from storage.migrate import upgrade_async
from storage.models import AuditEvent, LibraryPassage, LibraryTerm
from storage.repositories.audit import verify_chain
from storage.repositories.library import (
    LibraryState,
    add_document,
    library_state,
    library_version,
    remove_document,
)
from storage.repositories.library_terms import passage_stems

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


async def _stored_counts(session: AsyncSession) -> dict[str, int]:
    """library_terms as a dict."""
    rows = (await session.execute(select(LibraryTerm.stem, LibraryTerm.passages))).tuples()
    return {key: count for key, count in rows}


async def test_word_frequencies_follow_imports_and_removals(sessionmaker: Sessions) -> None:
    document_id = await _library(sessionmaker)
    async with sessionmaker() as session:
        stored = await _stored_counts(session)
        rows = (await session.execute(select(LibraryPassage.section, LibraryPassage.text))).tuples().all()
        state = await library_state(session, ["dehyd", "child", "zzzzz"])
        found, total = state.frequencies, state.passages
    expected = Counter(
        s for section, body in rows for s in passage_stems("Field Guideline Sample", section, body)
    )
    assert stored == dict(expected)
    assert stored["field"] == total == len(rows)  # the title's words are in every passage
    assert found == {k: expected[k] for k in ("dehyd", "child")}
    async with sessionmaker.begin() as session:
        await remove_document(session, document_id)
    async with sessionmaker() as session:
        assert await _stored_counts(session) == {}
        assert await library_state(session, ["dehyd"]) == LibraryState("", 0, {})


async def test_migration_0011_counts_the_passages_already_imported(db_url: str) -> None:
    await upgrade_async(db_url)
    engine = make_engine(db_url)
    try:
        sessions = make_sessionmaker(engine)
        await _library(sessions)
        async with sessions() as session:
            counted = await _stored_counts(session)
        async with sessions.begin() as session:  # back to how 0010 left a database with a library
            await session.execute(text("DROP TABLE library_terms"))
            await session.execute(text("UPDATE alembic_version SET version_num = '0010'"))
            if (await session.connection()).dialect.name == "postgresql":
                await session.execute(text("ALTER INDEX ix_library_passages_search RESET (fastupdate)"))
        await engine.dispose()
        await upgrade_async(db_url)
        async with sessions() as session:
            assert await _stored_counts(session) == counted
            if (await session.connection()).dialect.name == "postgresql":
                options = await session.scalar(
                    text("SELECT reloptions FROM pg_class WHERE relname = 'ix_library_passages_search'")
                )
                assert options == ["fastupdate=off"]  # no pending list for searches to read
    finally:
        await engine.dispose()


def test_very_common_words_are_left_out_and_rare_ones_asked_in_pairs() -> None:
    words = ["treat", "burn", "wound", "child"]
    counts = {"treat": 2_900, "burn": 300, "wound": 305, "child": 421}
    query = index_query(words, counts, 10_000, 0.3)
    assert query.words == ("burn", "wound", "child")
    assert query.pairs == ("burn", "wound", "child")  # rarest first; a relevant passage shares 2 of 4
    assert index_query(["treat", "give"], {"treat": 2_900, "give": 3_800}, 10_000, 0.3).words == ("treat",)
    small = index_query(words, {"treat": 90}, 100, 0.3)  # a small library is searched with every word
    assert small.words == tuple(words)
    assert index_query(["capital", "france"], {}, 10_000, 0.3).pairs == ()  # one shared word suffices


async def test_a_large_library_with_common_words_still_finds_the_passages(sessionmaker: Sessions) -> None:
    """The guideline among 3,000 synthetic passages that share its clinical words (and where "check"
    and "treat" are very common): every question still finds its passage."""
    for number, passages in enumerate(synthetic_documents(3_000)):
        async with sessionmaker.begin() as session:
            await add_document(
                session, title=f"Synthetic {number}", source=f"s{number}.md", format="markdown",
                language="en", sha256=f"{number:064x}", passages=passages,
            )  # fmt: skip
    await _library(sessionmaker)
    question = "Some dehydration in a toddler: how much ORS to treat it, and what to check?"
    words = terms(question)
    in_top3 = 0
    async with sessionmaker() as session:
        state = await library_state(session, sorted({stem(w) for w in words}))
        sections = [p.section for p in (await retrieve(session, question, "en")).passages]
        for asked, section in PAIRS:
            in_top3 += section in [p.section for p in (await retrieve(session, asked, "en")).passages]
    query = index_query(words, state.frequencies, state.passages, RetrievalLimits().min_match)
    assert {"check", "treat"} <= set(words) - set(query.words)  # left out: very common
    assert query.pairs  # and the rest asked two at a time first
    assert "Diarrhoea › Some dehydration" in sections, sections
    assert in_top3 == len(PAIRS), f"recall@3 {in_top3}/{len(PAIRS)}"


PNEUMONIA = "What amoxicillin dose for an infant with pneumonia and fast breathing?"
ALLERGY = "And if she is allergic to penicillin?"


def test_follow_ups_are_told_by_a_connective_or_a_pronoun() -> None:
    assert follows_on(ALLERGY) and follows_on("What about a newborn?") and follows_on("Is it serious?")
    assert follows_on("Et si elle est enceinte ?") and follows_on("¿Y si tiene fiebre?")
    assert not follows_on("What is the capital of France?") and not follows_on(PNEUMONIA)
    assert context_of((("first?", "a1"), ("second?", "a2"), ("third?", "a3"))) == "third? second?"


async def test_a_follow_up_is_retrieved_with_its_conversation_context(sessionmaker: Sessions) -> None:
    await _library(sessionmaker)
    async with sessionmaker() as session:
        alone = await retrieve(session, ALLERGY, "en")
        followed = await retrieve(session, ALLERGY, "en", context=PNEUMONIA)
        new_subject = await retrieve(session, "What is the capital of France?", "en", context=PNEUMONIA)
        own_words = await retrieve(session, "And what about a snake bite?", "en", context=PNEUMONIA)
    assert alone.passages == ()  # its own words are in no passage
    assert [p.section for p in followed.passages][:1] == ["Pneumonia"]
    assert new_subject.passages == ()  # not a follow-up: the earlier question does not count
    assert [p.section for p in own_words.passages][:2] == ["Snake bite", "Pneumonia"]
