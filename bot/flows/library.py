"""Grounding a question: the library passages it goes to the model with (retrieval runs in the bot).

The index finds passages sharing the question's words, ranked by bm25 (SQLite) or ts_rank_cd
(PostgreSQL). Each candidate's relevance is the share of the question's content words it contains
(compared by a crude five-letter stem, the same on both databases); candidates are ordered by that
share, then by the index's rank, and those below ``min_match`` dropped. The first ones are kept,
at most ``top_k`` and ``max_tokens`` (estimated) together.

Why in the bot, before the question is queued: the bot already opens the database for each
question (recording it) while workers need none (a worker may be a remote OpenAI-compatible
server's client); the bot writes the "Sources:" part, so it should own what was retrieved; and the
passages travel in the QuestionMessage, so a worker never quotes a passage the bot would not name.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from bot.library.words import stem, stems, terms
from storage.queue import Passage
from storage.repositories.library import library_version, passages_by_ids
from storage.repositories.library_index import search

CANDIDATES_PER_PASSAGE = 4  # candidates read from the index for each passage wanted


@dataclass(frozen=True)
class RetrievalLimits:
    """LIBRARY_TOP_K, LIBRARY_MAX_TOKENS and LIBRARY_MIN_MATCH."""

    top_k: int = 3
    max_tokens: int = 400
    min_match: float = 0.3


@dataclass(frozen=True)
class Grounding:
    """What was retrieved: the library version ("" when there is no library) and the passages."""

    library_version: str
    passages: tuple[Passage, ...]


def overlap(question_terms: list[str], passage_text: str) -> float:
    """The share of the question's content words (by stem) that ``passage_text`` contains."""
    if not question_terms:
        return 0.0
    wanted = {stem(word) for word in question_terms}
    return len(wanted & stems(passage_text)) / len(wanted)


async def retrieve(
    session: AsyncSession, question: str, language: str, limits: RetrievalLimits = RetrievalLimits()
) -> Grounding:
    """The passages to ground ``question`` on (none when the library is empty or nothing is relevant)."""
    version = await library_version(session)
    words = terms(question)
    if not version or not words or limits.top_k < 1:
        return Grounding(version, ())
    candidates = await search(session, words, language, limits.top_k * CANDIDATES_PER_PASSAGE)
    stored = await passages_by_ids(session, [c.passage_id for c in candidates])
    scored = []
    for position, candidate in enumerate(candidates):
        passage = stored.get(candidate.passage_id)
        if passage is not None:
            share = overlap(words, f"{passage.title} {passage.section} {passage.text}")
            scored.append((-share, position, passage))
    chosen: list[Passage] = []
    budget = limits.max_tokens
    for negative_share, _, passage in sorted(scored, key=lambda item: item[:2]):
        if -negative_share < limits.min_match or passage.tokens > budget:
            continue
        chosen.append(
            Passage(
                id=passage.id,
                title=passage.title,
                section=passage.section,
                page=passage.page,
                text=passage.text,
            )
        )
        budget -= passage.tokens
        if len(chosen) == limits.top_k:
            break
    return Grounding(version, tuple(chosen))
