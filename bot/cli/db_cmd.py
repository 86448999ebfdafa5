"""``db upgrade``: migrate the database to the newest schema."""

from __future__ import annotations

import argparse
from typing import Any

from bot.cli.common import database_url, prepare_database
from storage.db import redact_url
from storage.settings import StorageSettings


def add_parsers(sub: Any) -> None:
    """Register db and its subcommands."""
    db = sub.add_parser("db", help="database maintenance")
    dsub = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    dsub.add_parser("upgrade", help="apply all migrations (Alembic upgrade head)").set_defaults(
        handler=upgrade
    )


def upgrade(_: argparse.Namespace) -> int:
    """Apply every migration."""
    url = database_url(StorageSettings())
    prepare_database(url)
    print(f"{redact_url(url)}: schema is up to date")
    return 0
