"""Grounding a question: the library passages it goes to the model with (retrieval runs in the bot).

The index finds passages sharing the question's words, ranked by bm25 (SQLite) or by the idf of
the words they have plus ts_rank_cd (PostgreSQL). Very common words (in more than
``COMMON_SHARE`` of a large library's passages) are left out of the index query, and when a
relevant passage must share two or more of the words, the index is first asked for passages
sharing two of the others (then, if too few, one): so a query never makes the index rank most of
the library. Each candidate's relevance is the share of the
question's content words it contains (compared by a crude five-letter stem, the same on both
databases; common words count here too); candidates are ordered by that share, then by the
index's rank, and those below ``min_match`` dropped. The first ones are kept,
at most ``top_k`` and ``max_tokens`` (estimated) together.

A follow-up in a conversation ("And if she is allergic to penicillin?": it opens with a connective
or points back with a pronoun, see bot.library.words.follows_on) is retrieved with the
conversation's last questions as context: their words are searched too, and a passage's relevance
is the larger of its share of the question's words and the mean of that share and its share of the
context's words. So the context lifts a passage at most half-way and never lowers one: a passage
matching the follow-up itself still comes first, and a question on a new subject ("What is the
capital of France?") is retrieved on its own words.

Why in the bot, before the question is queued: the bot already opens the database for each
question (recording it) while workers need none (a worker may be a remote OpenAI-compatible
server's client); the bot writes the "Sources:" part, so it should own what was retrieved; and the
passages travel in the QuestionMessage, so a worker never quotes a passage the bot would not name.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from bot.library.words import MAX_TERMS, follows_on, stem, stems, terms
from storage.queue import Passage
from storage.repositories.library import LibraryState, library_state
from storage.repositories.library_index import Candidate, search

CANDIDATES_PER_PASSAGE = 4  # candidates read from the index for each passage wanted
COMMON_SHARE = 0.1  # a word in more of the passages than this is left out of the index query ...
COMMON_MIN = 100  # ... when that is more passages than this (a small library is searched whole)
PAIR_WORDS = 8  # the pairs query uses the rarest 8 words at most (28 pairs)
CONTEXT_QUESTIONS = 2  # a follow-up is retrieved with its conversation's last two questions


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


def relevance(words: list[str], context_words: list[str], passage_text: str) -> float:
    """The passage's share of the question's words, lifted by the context's (see the module)."""
    share = overlap(words, passage_text)
    if not context_words:
        return share
    return max(share, (share + overlap(context_words, passage_text)) / 2)


def context_of(history: Sequence[tuple[str, str]]) -> str:
    """The retrieval context of a follow-up: the conversation's last questions, newest first (not the
    answers: they are the model's words, not the person's)."""
    return " ".join(question for question, _ in reversed(history[-CONTEXT_QUESTIONS:]))


@dataclass(frozen=True)
class IndexQuery:
    """What the index is asked: ``words`` (any of them), and first ``pairs`` (two of them; may be empty)."""

    words: tuple[str, ...]
    pairs: tuple[str, ...]


def index_query(words: list[str], counts: dict[str, int], total: int, min_match: float) -> IndexQuery:
    """The index query for ``words`` (the question's, then the context's), given in how many of the
    ``total`` passages each stem occurs: very common words left out (all common: the rarest kept),
    and when a relevant passage must share two words or more, the rarest eight asked in pairs."""

    def frequency(word: str) -> int:
        return counts.get(stem(word), 0)

    common_above = max(COMMON_SHARE * total, COMMON_MIN)
    kept = [w for w in words if frequency(w) <= common_above]  # stable: the question's words first
    kept = kept or sorted(words, key=frequency)[:1]
    shared = math.ceil(min_match * len({stem(w) for w in words}) - 1e-9)  # words a relevant one has
    pairs = sorted(kept[:PAIR_WORDS], key=frequency) if shared >= 2 and len(kept) >= 2 else []
    return IndexQuery(tuple(kept), tuple(pairs))


async def _candidates(
    session: AsyncSession, words: list[str], state: LibraryState, language: str, limits: RetrievalLimits
) -> list[Candidate]:
    """Index candidates for ``words``: passages sharing two of the rarer words, then (if too few) one."""
    query = index_query(words, state.frequencies, state.passages, limits.min_match)
    limit = limits.top_k * CANDIDATES_PER_PASSAGE

    def idf(asked: tuple[str, ...]) -> list[float]:  # bm25's: rarer words weigh more
        df = [state.frequencies.get(stem(word), 0) for word in asked]
        return [math.log(1 + (state.passages - n + 0.5) / (n + 0.5)) for n in df]

    found = []
    if query.pairs:
        found = await search(session, query.pairs, language, limit, need=2, weights=idf(query.pairs))
    if len(found) < limit:
        seen = {c.passage_id for c in found}
        more = await search(session, query.words, language, limit, weights=idf(query.words))
        found += [c for c in more if c.passage_id not in seen][: limit - len(found)]
    return found


async def retrieve(
    session: AsyncSession,
    question: str,
    language: str,
    limits: RetrievalLimits = RetrievalLimits(),
    context: str = "",
) -> Grounding:
    """The passages to ground ``question`` on (none when the library is empty or nothing is relevant);
    ``context``: the conversation's earlier questions (see context_of), used when it follows on."""
    words = terms(question)
    own = {stem(word) for word in words}
    context_words = [w for w in terms(context) if stem(w) not in own] if follows_on(question) else []
    asked = (words + context_words)[:MAX_TERMS]
    state = await library_state(session, sorted({stem(word) for word in asked}))
    if not state.version or not words or limits.top_k < 1:
        return Grounding(state.version, ())
    candidates = await _candidates(session, asked, state, language, limits)
    scored = []
    for position, passage in enumerate(candidates):
        share = relevance(words, context_words, f"{passage.title} {passage.section} {passage.text}")
        scored.append((-share, position, passage))
    chosen: list[Passage] = []
    budget = limits.max_tokens
    for negative_share, _, passage in sorted(scored, key=lambda item: item[:2]):
        if -negative_share < limits.min_match or passage.tokens > budget:
            continue
        chosen.append(
            Passage(
                id=passage.passage_id,
                title=passage.title,
                section=passage.section,
                page=passage.page,
                text=passage.text,
            )
        )
        budget -= passage.tokens
        if len(chosen) == limits.top_k:
            break
    return Grounding(state.version, tuple(chosen))
