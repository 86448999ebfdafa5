"""``db upgrade``: migrate the database to the newest schema."""

from __future__ import annotations

import argparse

from bot.cli.database import database_url, prepare_database
from storage.settings import StorageSettings
from storage.urls import redact_url


def upgrade(_: argparse.Namespace) -> int:
    """Apply every migration."""
    url = database_url(StorageSettings())
    prepare_database(url)
    print(f"{redact_url(url)}: schema is up to date")
    return 0
