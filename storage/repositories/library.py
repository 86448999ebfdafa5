"""The guideline library: add, list and remove documents; its version; passages by id.

Every change is audited (``library.added``, ``library.removed``) with the document's sha256 and the
library version after it. The library version names the set of documents: the first 12 hex digits
of sha256 over their sorted sha256s ("" when the library is empty). The library holds no user data.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import delete, null, select, union_all
from sqlalchemy.ext.asyncio import AsyncSession

from storage.errors import StorageError
from storage.models import DOCUMENT_FORMATS, LibraryDocument, LibraryPassage, LibraryTerm
from storage.models.base import check_one_of
from storage.repositories.audit import append_audit
from storage.repositories.library_index import index_document, unindex_document
from storage.repositories.library_terms import count_document, uncount_document


class UnknownDocumentError(StorageError):
    """No library document has that id."""


@dataclass(frozen=True)
class NewPassage:
    """A passage to store: section path, page and text, with its estimated token count."""

    section: str
    page: int | None
    text: str
    tokens: int


@dataclass(frozen=True)
class StoredPassage:
    """A stored passage with its document's title (what prompts, sources and /sources show)."""

    id: int
    document_id: int
    title: str
    section: str
    page: int | None
    text: str
    tokens: int


@dataclass(frozen=True)
class LibraryState:
    """The library's version ("" when empty), its passage count, and how many passages have each of
    the stems asked about (see storage.repositories.library_terms)."""

    version: str
    passages: int
    frequencies: dict[str, int]


async def library_version(session: AsyncSession) -> str:
    """The version of the library now ("" when it has no document)."""
    return (await library_state(session)).version


async def library_state(session: AsyncSession, stems: Sequence[str] = ()) -> LibraryState:
    """The library now, with the frequencies of ``stems``: one query (retrieval runs it per question)."""
    documents = select(LibraryDocument.sha256, LibraryDocument.passages, null().label("stem"))
    terms = select(null(), LibraryTerm.passages, LibraryTerm.stem).where(LibraryTerm.stem.in_(list(stems)))
    hashes: list[str] = []
    total, frequencies = 0, {}
    for sha256, passages, stem in (await session.execute(union_all(documents, terms))).all():
        if stem is not None:
            frequencies[str(stem)] = int(passages)
        elif sha256 is not None:
            hashes.append(str(sha256))
            total += int(passages)
    if not hashes:
        return LibraryState("", 0, {})
    version = hashlib.sha256("\n".join(sorted(hashes)).encode("ascii")).hexdigest()[:12]
    return LibraryState(version, total, frequencies)


async def document_by_sha256(session: AsyncSession, sha256: str) -> LibraryDocument | None:
    """The document imported from a file with this sha256, if any."""
    query = select(LibraryDocument).where(LibraryDocument.sha256 == sha256)
    return (await session.execute(query)).scalar_one_or_none()


async def add_document(
    session: AsyncSession,
    *,
    title: str,
    source: str,
    format: str,
    language: str,
    sha256: str,
    passages: Sequence[NewPassage],
) -> LibraryDocument:
    """Store a document and its passages, index and count them, and audit the change."""
    check_one_of("format", format, DOCUMENT_FORMATS)
    if not passages:
        raise ValueError("a document needs at least one passage")
    document = LibraryDocument(
        title=title[:200], source=source[:255], format=format, language=language[:8],
        sha256=sha256, passages=len(passages),
    )  # fmt: skip
    session.add(document)
    await session.flush()
    session.add_all(
        LibraryPassage(
            document_id=document.id,
            ordinal=number,
            section=p.section[:500],
            page=p.page,
            text=p.text,
            tokens=p.tokens,
        )
        for number, p in enumerate(passages)
    )
    await session.flush()
    await index_document(session, document.id, document.title, document.language)
    await count_document(session, document.id)
    await _audit(session, "library.added", document)
    return document


async def remove_document(session: AsyncSession, document_id: int) -> LibraryDocument:
    """Remove a document, its passages, their index entries and counts; audit it."""
    document = await session.get(LibraryDocument, document_id)
    if document is None:
        raise UnknownDocumentError(f"no library document #{document_id}")
    await unindex_document(session, document_id)
    await uncount_document(session, document_id)
    await session.execute(delete(LibraryPassage).where(LibraryPassage.document_id == document_id))
    await session.delete(document)
    await session.flush()
    await _audit(session, "library.removed", document)
    return document


async def _audit(session: AsyncSession, event: str, document: LibraryDocument) -> None:
    """One audit event for a library change."""
    payload = {
        "document_id": document.id,
        "format": document.format,
        "library_version": await library_version(session),
        "passages": document.passages,
        "sha256": document.sha256,
        "title": document.title,
    }
    await append_audit(session, event, f"library:{document.id}", payload)


async def list_documents(session: AsyncSession) -> list[LibraryDocument]:
    """Every document, oldest first."""
    return list((await session.execute(select(LibraryDocument).order_by(LibraryDocument.id))).scalars())


async def passages_by_ids(session: AsyncSession, ids: Sequence[int]) -> dict[int, StoredPassage]:
    """The passages with these ids that still exist, by id."""
    if not ids:
        return {}
    query = (
        select(LibraryPassage, LibraryDocument.title)
        .join(LibraryDocument, LibraryDocument.id == LibraryPassage.document_id)
        .where(LibraryPassage.id.in_(list(ids)))
    )
    found = {}
    for passage, title in (await session.execute(query)).all():
        found[passage.id] = StoredPassage(
            passage.id,
            passage.document_id,
            title,
            passage.section,
            passage.page,
            passage.text,
            passage.tokens,
        )
    return found


def format_passage_ids(ids: Sequence[int]) -> str | None:
    """Passage ids as stored with an answer ("12,40,7"); None for none."""
    return ",".join(str(i) for i in ids) or None


def parse_passage_ids(stored: str | None) -> list[int]:
    """The passage ids stored with an answer."""
    return [int(part) for part in (stored or "").split(",") if part.strip().isdigit()]
