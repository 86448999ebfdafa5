"""``run`` (everything on one machine), ``bot`` and ``worker`` (the parts alone)."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys

import structlog

from bot.app import build_application, run_bot
from bot.cli.common import database_url, prepare_database, private_redis_dir, shared_redis_url
from bot.settings import BotSettings
from inference.engine import validate_gguf
from inference.settings import InferenceSettings
from inference.setup import ensure_model
from storage.errors import RedisUnavailableError
from storage.redis_server import PrivateRedis, answers_ping
from storage.settings import StorageSettings

log = structlog.get_logger("cli.run")

LOCAL_WORKER = "local-worker"


def _poll(settings: BotSettings, storage: StorageSettings, redis_url: str, db_url: str) -> None:
    """Run the Telegram bot (durable ingest by long polling) until SIGINT/SIGTERM."""
    prepare_database(db_url)
    app = build_application(settings, storage, redis_url=redis_url, database_url=db_url)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run_bot(app, stop)

    asyncio.run(main())


def bot(_: argparse.Namespace) -> int:
    """The bot alone."""
    settings, storage = BotSettings(), StorageSettings()
    _poll(settings, storage, shared_redis_url(storage), database_url(storage))
    return 0


def worker(_: argparse.Namespace) -> int:
    """One worker alone."""
    from inference.serve import serve

    storage = StorageSettings()
    return asyncio.run(serve(InferenceSettings(), storage, shared_redis_url(storage)))


def run(_: argparse.Namespace) -> int:
    """Private Redis if needed, migrations, one worker process, then the bot in this process."""
    settings, storage, inference = BotSettings(), StorageSettings(), InferenceSettings()
    model = ensure_model(inference, storage.ensure_data_dir())
    validate_gguf(model)
    db_url = database_url(storage)
    prepare_database(db_url)
    private = None if storage.redis_url else PrivateRedis(private_redis_dir(storage))
    if private is not None and private.socket.exists() and answers_ping(private.url):
        raise RedisUnavailableError(private.url, "another `meditron-bot run` uses this DATA_DIR")
    redis_url = private.start() if private else shared_redis_url(storage)
    child = _start_worker(redis_url, str(model))
    try:
        _poll(settings, storage, redis_url, db_url)
    finally:
        _stop_worker(child)
        if private is not None:
            private.stop()
    return 0


def _start_worker(redis_url: str, model_path: str) -> subprocess.Popen[bytes]:
    """The local worker as a child process (the model never shares the bot's event loop)."""
    env = dict(os.environ, REDIS_URL=redis_url, MODEL_PATH=model_path)
    env.setdefault("WORKER_NAME", LOCAL_WORKER)
    return subprocess.Popen([sys.executable, "-m", "bot.cli", "worker"], env=env, stdin=subprocess.DEVNULL)


def _stop_worker(child: subprocess.Popen[bytes]) -> None:
    """SIGTERM the worker; its unfinished question stays pending for the next start."""
    if child.poll() is None:
        child.terminate()
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
