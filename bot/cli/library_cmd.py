"""``library add | list | remove``: the guideline documents answers are grounded on (audited)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from bot.cli.database import database_url, prepare_database
from bot.library.importer import Imported, import_file
from bot.library.readers import LibraryImportError
from storage.audit_anchor import AuditAnchor
from storage.db import make_engine, make_sessionmaker
from storage.repositories.library import library_version, list_documents, remove_document
from storage.settings import StorageSettings

T = TypeVar("T")


async def _in_transaction(url: str, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run ``work`` in one transaction on the commands' database (audit rows keyed and anchored)."""
    engine = make_engine(url)
    anchor = AuditAnchor.for_storage(StorageSettings())
    try:
        async with anchor.attach(make_sessionmaker(engine)).begin() as session:
            return await work(session)
    finally:
        await engine.dispose()


def _url() -> str:
    """The migrated database of the commands."""
    url = database_url(StorageSettings())
    prepare_database(url)
    return url


def add(args: argparse.Namespace) -> int:
    """Import each file (one transaction each); a file that cannot be used is reported, exit 1."""
    paths: list[Path] = args.paths
    if args.title and len(paths) > 1:
        print("meditron-bot: error: --title needs exactly one PATH", file=sys.stderr)
        return 2
    url, failed = _url(), 0
    for path in paths:

        async def work(session: AsyncSession, path: Path = path) -> Imported:
            return await import_file(session, path, title=args.title, language=args.language)

        try:
            done = asyncio.run(_in_transaction(url, work))
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
    print(f"library version: {asyncio.run(_in_transaction(url, library_version)) or '(empty)'}")
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

    lines, version = asyncio.run(_in_transaction(_url(), work))
    print("\n".join(lines) if lines else "the library is empty")
    print(f"library version: {version or '(empty)'}")
    return 0


def remove(args: argparse.Namespace) -> int:
    """Remove one document by its id."""
    document = asyncio.run(_in_transaction(_url(), lambda s: remove_document(s, args.id)))
    print(f"removed #{document.id}: {document.title} ({document.passages} passages)")
    return 0
