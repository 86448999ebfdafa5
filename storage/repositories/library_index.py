"""The library's full-text index: SQLite FTS5 (bm25) or PostgreSQL full text (GIN; ranked by the
idf of the words a passage has, which the caller gives, plus ts_rank_cd, which has no idf).

Queries are the OR of a question's content words, so a passage worded differently still matches on
the words it shares, or (``need`` 2) the OR of every pair of them, so only passages sharing two of
the words are ranked; ranking puts the passages sharing the rarest words first. Either query can
use the index (FTS5's, or PostgreSQL's GIN index on ``search``) and ranks only the matching rows.
On PostgreSQL the document's language picks the text search configuration (stemming, stop words)
when the server has one for it, else ``simple``. bm25 weighs a match in the title 4, in the section 2, in the
text 1. The tables and column are those of storage.models.library (INDEX_TABLE, INDEX_COLUMN).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

# ISO 639-1 code -> PostgreSQL text search configuration (those PostgreSQL ships).
PG_CONFIGS = {
    "ar": "arabic", "ca": "catalan", "da": "danish", "de": "german", "el": "greek", "en": "english",
    "es": "spanish", "eu": "basque", "fi": "finnish", "fr": "french", "ga": "irish", "hi": "hindi",
    "hu": "hungarian", "hy": "armenian", "id": "indonesian", "it": "italian", "lt": "lithuanian",
    "ne": "nepali", "nl": "dutch", "no": "norwegian", "pt": "portuguese", "ro": "romanian",
    "ru": "russian", "sr": "serbian", "sv": "swedish", "ta": "tamil", "tr": "turkish", "yi": "yiddish",
}  # fmt: skip


@dataclass(frozen=True)
class Candidate:
    """A passage the index found for a query (``rank``: higher is better), read with it: its document's
    title, section, page, text and estimated tokens."""

    passage_id: int
    rank: float
    title: str
    section: str
    page: int | None
    text: str
    tokens: int


async def _dialect(session: AsyncSession) -> str:
    """``sqlite`` or ``postgresql``."""
    return (await session.connection()).dialect.name


_SERVER_CONFIGS: dict[str, bool] = {}  # configuration name -> the server has it (PostgreSQL ships them)


async def pg_config(session: AsyncSession, language: str) -> str:
    """The PostgreSQL configuration for ``language`` if the server has it, else ``simple``."""
    name = PG_CONFIGS.get(language.lower().split("-")[0], "simple")
    if name not in _SERVER_CONFIGS:
        query = text("SELECT count(*) FROM pg_ts_config WHERE cfgname = :n")
        _SERVER_CONFIGS[name] = bool(await session.scalar(query, {"n": name}))
    return name if _SERVER_CONFIGS[name] else "simple"


async def index_document(session: AsyncSession, document_id: int, title: str, language: str) -> None:
    """Index every passage of a document (after they are flushed)."""
    if await _dialect(session) == "postgresql":
        config = await pg_config(session, language)
        await session.execute(
            text(
                "UPDATE library_passages SET search = "
                "setweight(to_tsvector(CAST(:config AS regconfig), :title), 'A') || "
                "setweight(to_tsvector(CAST(:config AS regconfig), section), 'B') || "
                "to_tsvector(CAST(:config AS regconfig), text) WHERE document_id = :document"
            ),
            {"config": config, "title": title, "document": document_id},
        )
        return
    await session.execute(
        text(
            "INSERT INTO library_fts (rowid, title, section, text) "
            "SELECT id, :title, section, text FROM library_passages WHERE document_id = :document"
        ),
        {"title": title, "document": document_id},
    )


async def unindex_document(session: AsyncSession, document_id: int) -> None:
    """Remove a document's passages from the index (before the passages are deleted)."""
    if await _dialect(session) == "postgresql":
        return  # the index is a column of the rows being deleted
    query = "DELETE FROM library_fts WHERE rowid IN (SELECT id FROM library_passages WHERE document_id = :d)"
    await session.execute(text(query), {"d": document_id})


def _expression(words: Sequence[str], need: int, either: str, both: str, quote: str) -> str:
    """``words`` OR-ed, or (``need`` 2) every pair of them AND-ed, the pairs OR-ed."""
    quoted = [f"{quote}{word}{quote}" for word in words]
    if need < 2 or len(quoted) < 2:
        return either.join(quoted)
    return either.join(f"({a}{both}{b})" for a, b in combinations(quoted, 2))


async def search(
    session: AsyncSession,
    words: Sequence[str],
    language: str,
    limit: int,
    need: int = 1,
    weights: Sequence[float] = (),
) -> list[Candidate]:
    """The best ``limit`` passages containing any of ``words`` (``need`` 2: two of them; plain words,
    see bot.library.words). ``weights``: each word's idf, for PostgreSQL, whose ts_rank_cd has none
    (FTS5's bm25 has its own)."""
    idf = list(weights) if len(weights) == len(words) else [1.0] * len(words)
    weighed = [(word, x) for word, x in zip(words, idf, strict=True) if word.isalnum()]
    words = [word for word, _ in weighed]
    if not words:
        return []
    if await _dialect(session) == "postgresql":
        config = await pg_config(session, language)
        query = text(  # the idf of the words a passage has, then ts_rank_cd of their OR (not of the
            # pairs: that costs 8x as much)
            "SELECT p.id, (SELECT sum(u.x) FROM unnest(CAST(:each AS text[]), CAST(:idf AS float8[])) "
            "AS u(w, x) WHERE p.search @@ to_tsquery(CAST(:config AS regconfig), u.w)) "
            "+ ts_rank_cd(p.search, o) AS rank, d.title, p.section, p.page, p.text, p.tokens "
            "FROM library_passages p JOIN library_documents d ON d.id = p.document_id, "
            "to_tsquery(CAST(:config AS regconfig), :query) AS q, "
            "to_tsquery(CAST(:config AS regconfig), :words) AS o "
            "WHERE p.search @@ q ORDER BY rank DESC, p.id LIMIT :limit"
        )
        params: dict[str, object] = {
            "config": config,
            "query": _expression(words, need, " | ", " & ", ""),
            "words": " | ".join(words),
            "each": words,
            "idf": [x for _, x in weighed],
            "limit": limit,
        }
    else:
        query = text(
            "SELECT c.id, c.rank, d.title, p.section, p.page, p.text, p.tokens FROM (SELECT rowid AS id, "
            "-bm25(library_fts, 4.0, 2.0, 1.0) AS rank FROM library_fts WHERE library_fts MATCH :query "
            "ORDER BY rank DESC, rowid LIMIT :limit) AS c JOIN library_passages p ON p.id = c.id "
            "JOIN library_documents d ON d.id = p.document_id ORDER BY c.rank DESC, c.id"
        )
        params = {"query": _expression(words, need, " OR ", " AND ", '"'), "limit": limit}
    rows = (await session.execute(query, params)).all()
    return [Candidate(int(r[0]), float(r[1]), r[2], r[3], r[4], r[5], int(r[6])) for r in rows]
