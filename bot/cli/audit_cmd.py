"""``audit verify``: walk the audit chain, check it reaches its anchor, and say exactly what held."""

from __future__ import annotations

import argparse
import asyncio
import sys

from bot.cli.database import database_url, prepare_database
from storage.audit_anchor import AuditAnchor
from storage.db import make_engine, make_sessionmaker
from storage.errors import AuditChainError
from storage.repositories.audit import ChainReport, verify_audit
from storage.settings import StorageSettings


async def _verify(url: str, anchor: AuditAnchor) -> ChainReport:
    """The report of a whole, anchored chain (raises AuditChainError at the first problem)."""
    engine = make_engine(url)
    try:
        async with anchor.attach(make_sessionmaker(engine)).begin() as session:
            return await verify_audit(session)
    finally:
        await engine.dispose()


def describe(report: ChainReport) -> str:
    """The lines printed for a chain that verified."""
    lines = [f"audit chain intact: {report.rows} rows ({report.keyed_rows} keyed with the audit key)"]
    if report.anchor is not None:
        lines.append(
            f"anchored: row {report.anchor.row_id} (row {report.anchored_rows} of the chain, hash "
            f"{report.anchor.head_hash}) matches the signed anchor file: rows up to it were neither "
            "deleted nor rewritten"
        )
    if report.unanchored_rows:
        lines.append(
            f"not anchored: the {report.unanchored_rows} newest rows (committed after the anchor was "
            "last moved); deleting them would not be detected"
        )
    plain = report.rows - report.keyed_rows
    if plain:
        lines.append(f"unkeyed: the {plain} oldest rows predate the keyed hash (plain SHA-256)")
    return "\n".join(lines)


def verify(_: argparse.Namespace) -> int:
    """Exit 0 describing what was checked when the chain is whole; exit 1 naming the problem."""
    storage = StorageSettings()
    url = database_url(storage)
    prepare_database(url)
    anchor = AuditAnchor.for_storage(storage)
    try:
        report = asyncio.run(_verify(url, anchor))
    except AuditChainError as exc:
        print(f"audit log BROKEN: {exc}", file=sys.stderr)
        return 1
    print(describe(report))
    return 0
