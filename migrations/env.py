"""Alembic environment: async engine, metadata from storage.models, batch mode on SQLite.

The database is chosen by the caller, never by a global: ``config.attributes["connection"]`` (a
sync Connection, as storage.migrate passes), else ``config.attributes["url"]``, else the
``sqlalchemy.url`` option of the Alembic config.
"""

from __future__ import annotations

import asyncio
from typing import Any

from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy.engine import Connection

from storage.db import make_engine
from storage.migrate import disable_sqlite_foreign_keys
from storage.models import Base, UTCDateTime  # the package imports every model module
from storage.models.library import INDEX_NAMES, INDEX_TABLE

config = context.config
target_metadata = Base.metadata


def render_item(kind: str, item: Any, autogen_context: AutogenContext) -> str | bool:
    """Render UTCDateTime as plain ``sa.DateTime(timezone=True)`` in generated migrations."""
    if kind == "type" and isinstance(item, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def include_name(name: str | None, type_: str, _parents: Any) -> bool:
    """Leave the library's full-text index to its migration (FTS5 tables, the tsvector column)."""
    if name is None:
        return True
    if type_ == "table" and name.startswith(INDEX_TABLE):
        return False
    return not (type_ in ("column", "index") and name in INDEX_NAMES)


def _configure(**options: Any) -> None:
    """Configure the migration context with the project's options."""
    context.configure(
        target_metadata=target_metadata,
        compare_type=True,
        render_item=render_item,
        include_name=include_name,
        **options,
    )


def _url() -> str:
    """Return the database URL given by the caller."""
    url = config.attributes.get("url") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no database URL: pass config.attributes['url'] or sqlalchemy.url")
    return str(url)


def run_offline() -> None:
    """Emit SQL to stdout instead of running it."""
    url = _url()
    _configure(url=url, literal_binds=True, render_as_batch=url.startswith("sqlite"))
    with context.begin_transaction():
        context.run_migrations()


def run_with_connection(connection: Connection) -> None:
    """Run the migrations on an open connection."""
    _configure(connection=connection, render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


async def run_online_async() -> None:
    """Create an engine for the URL and run the migrations on it."""
    engine = make_engine(_url())
    disable_sqlite_foreign_keys(engine)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(run_with_connection)
    finally:
        await engine.dispose()


def run_online() -> None:
    """Use the caller's connection if there is one, else connect to the URL."""
    connection = config.attributes.get("connection")
    if connection is not None:
        run_with_connection(connection)
    else:
        asyncio.run(run_online_async())


if context.is_offline_mode():
    run_offline()
else:
    run_online()
