"""``admin``: serve the review console (reviewers, admins, clinicians); ``add-user``, ``disable-user``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import os
import sys
from typing import TYPE_CHECKING

import structlog

from bot.cli.database import in_transaction, migrated_database
from bot.process.private_redis import shared_redis_url
from storage.audit_anchor import AuditAnchor
from storage.db import make_engine, make_sessionmaker
from storage.errors import RedisUnavailableError
from storage.settings import StorageSettings

if TYPE_CHECKING:
    import uvicorn
    from sqlalchemy.ext.asyncio import AsyncEngine

    from bot.console.health import HealthProbe
    from bot.console.outbox import ReplyOutbox
    from bot.process.telemetry.endpoints import Check

log = structlog.get_logger("cli.admin")


def read_password(prompt: str = "Password: ") -> str:
    """Ask twice on a terminal; otherwise read one line from stdin."""
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass(prompt)
    if getpass.getpass("Repeat the password: ") != first:
        raise SystemExit("meditron-bot: error: the passwords differ")
    return first


def add_user(args: argparse.Namespace) -> int:
    """Create a reviewer or admin account."""
    from storage.repositories.accounts import add_account, check_password_strength

    url = migrated_database()
    password = read_password()
    check_password_strength(password)
    asyncio.run(in_transaction(url, lambda s: add_account(s, args.name, password, args.role)))
    print(f"account {args.name} ({args.role}) created")
    return 0


def disable_user(args: argparse.Namespace) -> int:
    """Disable an account; its open sessions end at their next request."""
    from storage.repositories.accounts import disable_account

    asyncio.run(in_transaction(migrated_database(), lambda s: disable_account(s, args.name)))
    print(f"account {args.name} disabled")
    return 0


def _health_probe(storage: StorageSettings) -> HealthProbe | None:
    """A Redis health probe when REDIS_URL is set or `run`'s private server is up, else None."""
    from bot.console.health import redis_probe

    try:
        redis_url = shared_redis_url(storage)
    except RedisUnavailableError:
        return None
    return redis_probe(redis_url, storage)


def _outbox(storage: StorageSettings) -> ReplyOutbox | None:
    """Where clinicians' replies go (the bot's Redis), when REDIS_URL is set or `run`'s server is up."""
    from bot.console.outbox import redis_outbox

    try:
        redis_url = shared_redis_url(storage)
    except RedisUnavailableError:
        return None
    return redis_outbox(redis_url, storage)


async def _serve(engine: AsyncEngine, config: uvicorn.Config, checks: dict[str, Check]) -> None:
    """Run uvicorn on this loop (metrics and health on METRICS_PORT); dispose of the engine afterwards."""
    import uvicorn

    from bot.process.telemetry.endpoints import start_endpoints

    endpoints = start_endpoints(checks, "console")
    try:
        await uvicorn.Server(config).serve()
    finally:
        if endpoints is not None:
            await asyncio.to_thread(endpoints.stop)
        await engine.dispose()


def _checks(storage: StorageSettings, db_url: str) -> dict[str, Check]:
    """The console's readiness: its database, and Redis when it shows queue health from one."""
    from bot.process.telemetry.checks import database_check, redis_check

    checks = {"database": database_check(db_url)}
    with contextlib.suppress(RedisUnavailableError):  # no Redis: the console shows no queue health
        checks["redis"] = redis_check(shared_redis_url(storage))
    return checks


def serve(args: argparse.Namespace) -> int:
    """Serve the console with uvicorn until Ctrl-C."""
    from bot.console import create_app
    from bot.console.secret import load_or_create_secret
    from bot.console.serving import server_config
    from bot.console.settings import ConsoleSettings

    proxies = ConsoleSettings().proxies
    storage = StorageSettings()
    url = migrated_database()
    secret = load_or_create_secret(storage.ensure_data_dir(), os.environ.get("CONSOLE_SECRET_KEY"))
    engine = make_engine(url)
    sessions = AuditAnchor.for_storage(storage).attach(make_sessionmaker(engine))
    app = create_app(
        sessions, secret_key=secret, https=args.https, health=_health_probe(storage), outbox=_outbox(storage)
    )
    config = server_config(app, args.host, args.port, proxies)
    log.info("console.start", host=args.host, port=args.port, https=args.https, trusted_proxies=len(proxies))
    print(f"review console on http://{args.host}:{args.port}/ (Ctrl-C stops it)", file=sys.stderr)
    asyncio.run(_serve(engine, config, _checks(storage, url)))
    return 0
