"""``library add | list | remove``: the guideline documents answers are grounded on (audited)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession

from bot.cli.database import in_transaction, migrated_database
from bot.library.importer import Imported, import_file
from bot.library.readers import LibraryImportError
from storage.repositories.library import library_version, list_documents, remove_document


def add(args: argparse.Namespace) -> int:
    """Import each file (one transaction each); a file that cannot be used is reported, exit 1."""
    paths: list[Path] = args.paths
    if args.title and len(paths) > 1:
        print("meditron-bot: error: --title needs exactly one PATH", file=sys.stderr)
        return 2
    url, failed = migrated_database(), 0
    for path in paths:

        async def work(session: AsyncSession, path: Path = path) -> Imported:
            return await import_file(session, path, title=args.title, language=args.language)

        try:
            done = asyncio.run(in_transaction(url, work))
        except LibraryImportError as exc:
            print(f"refused: {exc}", file=sys.stderr)
            failed += 1
            continue
        doc = done.document
        if done.already:
            print(f"already in the library as #{doc.id}: {doc.title} ({path.name})")
        else:
            parts = f"{doc.format}, {doc.passages} passages, sha256 {doc.sha256[:12]}"
            print(f"added #{doc.id}: {doc.title} ({parts})")
    print(f"library version: {asyncio.run(in_transaction(url, library_version)) or '(empty)'}")
    return 1 if failed else 0


def list_library(args: argparse.Namespace) -> int:
    """One line per document, then the library version."""

    async def work(session: AsyncSession) -> tuple[list[str], str]:
        lines = [
            f"#{d.id}  {d.title}  [{d.format}, {d.language}, {d.passages} passages, added "
            f"{d.added_at:%Y-%m-%d}, sha256 {d.sha256[:12]}]  {d.source}"
            for d in await list_documents(session)
        ]
        return lines, await library_version(session)

    lines, version = asyncio.run(in_transaction(migrated_database(), work))
    print("\n".join(lines) if lines else "the library is empty")
    print(f"library version: {version or '(empty)'}")
    return 0


def remove(args: argparse.Namespace) -> int:
    """Remove one document by its id."""
    document = asyncio.run(in_transaction(migrated_database(), lambda s: remove_document(s, args.id)))
    print(f"removed #{document.id}: {document.title} ({document.passages} passages)")
    return 0
