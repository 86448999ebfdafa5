"""``run`` (everything on one machine, supervised), ``bot`` and ``worker`` (the parts alone)."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys

import structlog

from bot.cli.common import database_url, prepare_database, private_redis_dir, shared_redis_url
from bot.runlock import RunLock
from bot.settings import BotSettings
from bot.supervisor import ChildSpec, Supervisor, die_with_parent
from bot.telegram.alerts import alert
from bot.telegram.app import AppType, build_application, run_bot
from inference.modelfile import validate_gguf
from inference.settings import InferenceSettings
from inference.setup import ensure_model
from storage.redis_server import PrivateRedis, answers_ping_async
from storage.settings import StorageSettings

log = structlog.get_logger("cli.run")

LOCAL_WORKER = "local-worker"
WORKER_STOP_S = 30.0
REDIS_STOP_S = 20.0


def _stop_event() -> asyncio.Event:
    """An event set by SIGINT or SIGTERM (Ctrl-C or a stop request)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


def bot(_: argparse.Namespace) -> int:
    """The bot alone, until SIGINT/SIGTERM."""
    settings, storage = BotSettings(), StorageSettings()
    db_url = database_url(storage)
    prepare_database(db_url)
    app = build_application(settings, storage, redis_url=shared_redis_url(storage), database_url=db_url)

    async def main() -> None:
        await run_bot(app, _stop_event())

    asyncio.run(main())
    return 0


def worker(_: argparse.Namespace) -> int:
    """One worker alone."""
    from inference.serve import serve

    storage = StorageSettings()
    return asyncio.run(serve(InferenceSettings(), storage, shared_redis_url(storage)))


def run(_: argparse.Namespace) -> int:
    """Lock DATA_DIR, migrate, then the supervised private Redis and worker, and the bot in this process."""
    settings, storage, inference = BotSettings(), StorageSettings(), InferenceSettings()
    with RunLock(storage.ensure_data_dir()) as lock:
        model = ensure_model(inference, storage.data_dir)
        validate_gguf(model)
        db_url = database_url(storage)
        prepare_database(db_url)
        return asyncio.run(_run(settings, storage, lock, str(model), db_url))


class _Alerts:
    """Tells the admin chat that a child died (once the bot runs); pids and exit codes only."""

    def __init__(self, chat_id: int | None) -> None:
        self.chat_id = chat_id
        self.app: AppType | None = None

    async def child_exited(self, name: str, code: int, delay: float) -> None:
        """The supervisor's exit callback."""
        if self.app is None or not self.app.running:
            return
        text = f"meditron-bot: the {name} process exited (code {code}); restarting it in {delay:g} s."
        await alert(self.app.bot, self.chat_id, text)


async def _run(
    settings: BotSettings, storage: StorageSettings, lock: RunLock, model: str, db_url: str
) -> int:
    """One event loop: children first, then the bot until a signal; stop the bot, worker, Redis."""
    stop = _stop_event()
    alerts = _Alerts(settings.admin_chat_id)
    supervisor = Supervisor(on_exit=alerts.child_exited, on_start=lock.record)
    try:
        redis_url = await _start_redis(supervisor, storage)
        await supervisor.start(_worker_spec(redis_url, model))
        alerts.app = build_application(settings, storage, redis_url=redis_url, database_url=db_url)
        await run_bot(alerts.app, stop)
        log.info("bot.stopped")
    finally:
        await supervisor.stop_all()
    log.info("run.stopped")
    return 0


async def _start_redis(supervisor: Supervisor, storage: StorageSettings) -> str:
    """REDIS_URL, or the private server started as a supervised child; returns the URL."""
    if storage.redis_url is not None:
        return storage.redis_url.get_secret_value()
    private = PrivateRedis(private_redis_dir(storage))
    private.prepare()

    def forget_socket() -> None:  # before a restart: the dead server's socket
        private.socket.unlink(missing_ok=True)

    async def ready() -> bool:
        return await answers_ping_async(private.url, timeout=0.5)

    spec = ChildSpec(
        "redis", private.command(), prepare=forget_socket, ready=ready, stop_timeout_s=REDIS_STOP_S
    )
    await supervisor.start(spec)
    return private.url


def _worker_env(redis_url: str, model_path: str) -> dict[str, str]:
    """The worker's environment: this one plus the Redis URL and the model file."""
    env = dict(os.environ, REDIS_URL=redis_url, MODEL_PATH=model_path)
    env.setdefault("WORKER_NAME", LOCAL_WORKER)
    return env


def _worker_spec(redis_url: str, model_path: str) -> ChildSpec:
    """The local worker (the model never shares the bot's event loop); SIGTERM leaves its question pending."""
    argv = [sys.executable, "-m", "bot.cli", "worker"]
    return ChildSpec("worker", argv, env=_worker_env(redis_url, model_path), stop_timeout_s=WORKER_STOP_S)


def _start_worker(redis_url: str, model_path: str) -> subprocess.Popen[bytes]:
    """A worker child for ``ask`` (unsupervised; it still ends with this process on Linux)."""
    return subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "worker"], env=_worker_env(redis_url, model_path),
        stdin=subprocess.DEVNULL, preexec_fn=die_with_parent(),
    )  # fmt: skip


def _stop_worker(child: subprocess.Popen[bytes]) -> None:
    """SIGTERM the worker; its unfinished question stays pending for the next start."""
    if child.poll() is None:
        child.terminate()
        try:
            child.wait(timeout=WORKER_STOP_S)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
