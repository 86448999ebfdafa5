"""``audit verify``: walk the audit chain and say whether it is whole."""

from __future__ import annotations

import argparse
import asyncio
import sys

from bot.cli.common import database_url, prepare_database
from storage.db import make_engine, make_sessionmaker
from storage.errors import AuditChainError
from storage.repository.audit import verify_chain
from storage.settings import StorageSettings


async def _verify(url: str) -> int:
    """The number of rows in a whole chain (raises AuditChainError at the first broken row)."""
    engine = make_engine(url)
    try:
        async with make_sessionmaker(engine).begin() as session:
            return await verify_chain(session)
    finally:
        await engine.dispose()


def verify(_: argparse.Namespace) -> int:
    """Exit 0 with the row count when the chain is whole; exit 1 naming the first broken row."""
    url = database_url(StorageSettings())
    prepare_database(url)
    try:
        count = asyncio.run(_verify(url))
    except AuditChainError as exc:
        print(f"audit chain BROKEN at row {exc.row_id}: {exc}", file=sys.stderr)
        return 1
    print(f"audit chain intact: {count} rows")
    return 0
