"""``invite create``: a new invite code, printed once with its deep link; only its sha256 is stored."""

from __future__ import annotations

import argparse
import asyncio
from datetime import UTC, datetime

from bot.cli.database import database_url, prepare_database
from storage.db import make_engine, make_sessionmaker
from storage.repositories.invites import create_invite
from storage.settings import StorageSettings


async def _create(url: str, uses: int, expires_at: datetime | None) -> str:
    """Store a new code and return it."""
    engine = make_engine(url)
    try:
        async with make_sessionmaker(engine).begin() as session:
            return await create_invite(session, uses, expires_at)
    finally:
        await engine.dispose()


def create(args: argparse.Namespace) -> int:
    """Print a new code: ``/start CODE`` in a private chat with the bot redeems it."""
    url = database_url(StorageSettings())
    prepare_database(url)
    expires_at = datetime.now(UTC) + args.expires if args.expires else None
    code = asyncio.run(_create(url, args.uses, expires_at))
    until = f", valid until {expires_at:%Y-%m-%d %H:%M} UTC" if expires_at else ""
    print(f"invite code: {code}  ({args.uses} use{'s' if args.uses != 1 else ''}{until})")
    print(f"users send: /start {code}   or open: https://t.me/<your bot>?start={code}")
    return 0
