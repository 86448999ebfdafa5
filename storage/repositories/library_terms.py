"""The library's word forms and document frequencies: in how many passages each word stem occurs.

A stem is the first five letters of a folded word (lower case, no diacritics): crude and
language-blind, but the same on every database. ``library_terms`` holds, for each stem, the number
of passages whose title, section or text contain it; it is kept with the passages (add, remove).
Retrieval reads it (storage.repositories.library.library_state) to leave very common words out of
the index query, so that a question with common words does not make the index rank most of the
library.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable

from sqlalchemy import delete, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import LibraryDocument, LibraryPassage, LibraryTerm

WORD = re.compile(r"\w+", re.UNICODE)
STEM_CHARS = 5


def fold(value: str) -> str:
    """Lower case without diacritics (``Réhydratation`` → ``rehydratation``)."""
    decomposed = unicodedata.normalize("NFKD", value.lower())
    return "".join(char for char in decomposed if not unicodedata.combining(char))


def stem(word: str) -> str:
    """A crude, language-blind stem: the first five letters (dehydrated, dehydration → dehyd)."""
    return word[:STEM_CHARS]


def stems(value: str) -> set[str]:
    """The stems of every word of ``value``."""
    return {stem(word) for word in WORD.findall(fold(value))}


def passage_stems(title: str, section: str, body: str) -> set[str]:
    """The stems a passage is found by (its document title, section and text)."""
    return stems(f"{title} {section} {body}")


async def _add_counts(session: AsyncSession, counts: Counter[str], sign: int) -> None:
    """Add (``sign`` 1) or subtract (-1) ``counts`` to the stored frequencies."""
    if not counts:
        return
    rows = [{"stem": key, "n": sign * n} for key, n in counts.items()]
    await session.execute(
        text(
            "INSERT INTO library_terms (stem, passages) VALUES (:stem, :n) "
            "ON CONFLICT (stem) DO UPDATE SET passages = library_terms.passages + excluded.passages"
        ),
        rows,
    )
    if sign < 0:
        await session.execute(delete(LibraryTerm).where(LibraryTerm.passages <= 0))


def _count(title: str, passages: Iterable[tuple[str, str]]) -> Counter[str]:
    """For each stem, how many of these (section, text) passages of a document titled ``title`` have it."""
    counts: Counter[str] = Counter()
    for section, body in passages:
        counts.update(passage_stems(title, section, body))
    return counts


async def count_document(session: AsyncSession, document_id: int) -> None:
    """Count a stored document's passages in the frequencies (after they are flushed)."""
    await _add_counts(session, await _document_counts(session, document_id), 1)


async def uncount_document(session: AsyncSession, document_id: int) -> None:
    """Take a document's passages out of the frequencies (before they are deleted)."""
    await _add_counts(session, await _document_counts(session, document_id), -1)


async def _document_counts(session: AsyncSession, document_id: int) -> Counter[str]:
    """The stem counts of one stored document."""
    title = await session.scalar(select(LibraryDocument.title).where(LibraryDocument.id == document_id))
    query = select(LibraryPassage.section, LibraryPassage.text).where(
        LibraryPassage.document_id == document_id
    )
    return _count(title or "", (await session.execute(query)).tuples())
