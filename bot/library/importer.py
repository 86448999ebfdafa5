"""Import one file into the library: read it, split it, store and index its passages (audited)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession

from bot.library.passages import split_passages
from bot.library.readers import LibraryImportError, read_document
from storage.models import LibraryDocument
from storage.repositories.library import NewPassage, add_document, document_by_sha256


@dataclass(frozen=True)
class Imported:
    """The stored document, and whether it was already there (same sha256)."""

    document: LibraryDocument
    already: bool


def file_sha256(path: Path) -> str:
    """The sha256 of the file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


async def import_file(
    session: AsyncSession, path: Path, *, title: str | None = None, language: str = "en"
) -> Imported:
    """Add ``path`` to the library (nothing happens for a file already in it)."""
    try:
        sha256 = file_sha256(path)
    except OSError as exc:
        raise LibraryImportError(f"{path.name}: cannot be read ({exc.strerror})") from None
    existing = await document_by_sha256(session, sha256)
    if existing is not None:
        return Imported(existing, already=True)
    document = read_document(path)
    passages = [
        NewPassage(p.section, p.page, p.text, p.tokens)
        for p in split_passages(document.blocks, document.title)
        if p.text.strip()
    ]
    if not passages:
        raise LibraryImportError(f"{path.name}: no text found")
    name = " ".join((title or document.title or path.stem.replace("_", " ")).split())
    stored = await add_document(
        session, title=name, source=path.name, format=document.format, language=language,
        sha256=sha256, passages=passages,
    )  # fmt: skip
    return Imported(stored, already=False)
