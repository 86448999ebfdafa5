"""Migration 0005 (``questions.red_flag``) on SQLite and PostgreSQL: old rows survive both ways."""

from __future__ import annotations

from datetime import UTC, datetime

from alembic import command
from sqlalchemy import Connection, inspect, text

from storage.db import make_engine
from storage.migrate import _run, check_async, make_config, upgrade_async

USER = (
    "INSERT INTO users (id, pseudonym, created_at, service_consent, research_consent)"
    " VALUES (1, :p, :t, :y, :y)"
)
QUESTION = (
    "INSERT INTO questions"
    " (id, user_id, chat_pseudonym, chat_type, text_chars, research, received_at, status)"
    " VALUES ('q-before-0005', 1, :p, 'private', 12, :y, :t, 'answered')"
)


async def _execute(url: str, statement: str, **values: object) -> list[tuple[object, ...]]:
    """Run one SQL statement in its own transaction; the rows it returns."""
    engine = make_engine(url)
    try:
        async with engine.begin() as connection:
            result = await connection.execute(text(statement), values)
            return [tuple(row) for row in result] if result.returns_rows else []
    finally:
        await engine.dispose()


async def _columns(url: str) -> set[str]:
    """The columns of ``questions``."""
    engine = make_engine(url)
    try:
        async with engine.connect() as connection:
            found = await connection.run_sync(lambda c: inspect(c).get_columns("questions"))
    finally:
        await engine.dispose()
    return {str(column["name"]) for column in found}


def _downgrade_on(connection: Connection, url: str, revision: str) -> None:
    """``alembic downgrade revision`` on ``connection``."""
    command.downgrade(make_config(url, connection), revision)


async def test_0005_adds_an_empty_red_flag_to_old_questions_and_can_be_undone(db_url: str) -> None:
    await upgrade_async(db_url, "0004")
    assert "red_flag" not in await _columns(db_url)
    values = {"p": "p" * 64, "t": datetime(2026, 11, 30, 10, tzinfo=UTC), "y": True}
    await _execute(db_url, USER, **values)
    await _execute(db_url, QUESTION, **values)
    await upgrade_async(db_url)
    assert await _execute(db_url, "SELECT id, red_flag FROM questions") == [("q-before-0005", None)]
    await check_async(db_url)  # models and migrations agree (alembic check)
    await _run(db_url, _downgrade_on, "0004")
    assert "red_flag" not in await _columns(db_url)
    assert await _execute(db_url, "SELECT id, status FROM questions") == [("q-before-0005", "answered")]
