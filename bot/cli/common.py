"""Shared start-up steps of the commands: settings, Redis URL, database URL and migrations."""

from __future__ import annotations

import asyncio
from pathlib import Path

from pydantic import ValidationError

from storage.db import check_connection, default_sqlite_url, make_engine
from storage.errors import RedisUnavailableError
from storage.migrate import upgrade_async
from storage.settings import StorageSettings

ENV_NAMES = {"telegram_bot_token": "TELEGRAM_BOT_TOKEN", "trusted_proxies": "CONSOLE_TRUSTED_PROXIES"}


def describe_validation_error(exc: ValidationError) -> str:
    """One line naming the environment variables that are missing or wrong (never their values)."""
    parts = []
    for error in exc.errors():
        field = str(error["loc"][0]) if error["loc"] else "?"
        name = ENV_NAMES.get(field, field.upper())
        if error["type"] == "missing":
            parts.append(f"{name} is not set")
        else:
            parts.append(f"{name} is not valid ({error['msg']})")
    hint = " (get a token from @BotFather)" if "TELEGRAM_BOT_TOKEN is not set" in parts else ""
    return "; ".join(parts) + hint


def database_url(storage: StorageSettings) -> str:
    """DATABASE_URL, or a SQLite file in the data directory."""
    if storage.database_url is not None:
        return storage.database_url.get_secret_value()
    return default_sqlite_url(storage.ensure_data_dir())


def private_redis_dir(storage: StorageSettings) -> Path:
    """Where the private Redis server keeps its socket and append-only file."""
    return storage.ensure_data_dir() / "redis"


def shared_redis_url(storage: StorageSettings) -> str:
    """REDIS_URL, or the private server's socket when `run` has it up; else a clear error."""
    if storage.redis_url is not None:
        return storage.redis_url.get_secret_value()
    socket = private_redis_dir(storage) / "redis.sock"
    if socket.exists():
        return f"unix://{socket}"
    raise RedisUnavailableError("(unset)", "REDIS_URL is not set and no private server runs; set REDIS_URL")


async def _prepare_database(url: str) -> None:
    """Check the database answers, then migrate it to the newest schema."""
    engine = make_engine(url)
    try:
        await check_connection(engine, url)
    finally:
        await engine.dispose()
    await upgrade_async(url)


def prepare_database(url: str) -> None:
    """Blocking form of the check-and-migrate step, for the commands."""
    asyncio.run(_prepare_database(url))
