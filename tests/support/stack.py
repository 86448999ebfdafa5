"""The whole system for end-to-end tests: the real bot against the Bot API stand-in, real workers."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from pydantic import SecretStr

from bot.settings import BotSettings
from bot.telegram import texts
from bot.telegram.app import build_application
from inference.engine import Engine
from inference.worker import Worker, WorkerConfig
from storage.audit_anchor import AuditAnchor
from storage.pseudonym import Pseudonymizer
from storage.queue import QueueNames, queue_from_settings
from storage.queue.connection import connect
from storage.settings import StorageSettings
from tests.support.telegram_stub import TelegramStub

if TYPE_CHECKING:
    from telegram.ext import Application

PSEUDONYM_KEY = "k" * 64


@dataclass
class Stack:
    """Settings shared by the bot and workers of one test."""

    stub: TelegramStub
    storage: StorageSettings
    bot: BotSettings
    redis_url: str
    db_url: str
    model_path: Path

    def audit_anchor(self) -> AuditAnchor:
        """The bot's audit anchor and chain key: attach it to a sessionmaker to verify or write as the bot."""
        pseudonyms = Pseudonymizer.from_key(PSEUDONYM_KEY.encode())
        return AuditAnchor.from_pseudonyms(self.storage.data_dir, pseudonyms)

    def worker_env(self, **extra: str) -> dict[str, str]:
        """Environment of a worker process on this stack."""
        env = {
            **os.environ,
            "REDIS_URL": self.redis_url,
            "DATABASE_URL": self.db_url,
            "DATA_DIR": str(self.storage.data_dir),
            "MODEL_PATH": str(self.model_path),
            "QUEUE_NAMESPACE": self.storage.queue_namespace,
            "QUEUE_CLAIM_IDLE_MS": str(self.storage.queue_claim_idle_ms),
            "PSEUDONYM_KEY": PSEUDONYM_KEY,
            "N_CTX": "2048",
            "MAX_ANSWER_TOKENS": "24",
        }
        env.update(extra)
        return env


@pytest.fixture
def stack(
    telegram_stub: TelegramStub,
    redis_url: str,
    migrated_db_url: str,
    tiny_model_path: Path,
    queue_names: QueueNames,
    tmp_path: Path,
) -> Stack:
    """Settings for a bot and workers on fresh Redis keys and a fresh database."""
    storage = StorageSettings(
        data_dir=tmp_path / "data",
        database_url=SecretStr(migrated_db_url),
        redis_url=SecretStr(redis_url),
        pseudonym_key=SecretStr(PSEUDONYM_KEY),
        queue_namespace=queue_names.namespace,
        queue_claim_idle_ms=1_000,
    )
    bot = BotSettings(
        telegram_bot_token=SecretStr(telegram_stub.token),
        telegram_api_url=telegram_stub.base_url,
        telegram_file_url=telegram_stub.file_url,
        typing_interval_s=0.2,
        poll_timeout_s=5,
    )
    return Stack(telegram_stub, storage, bot, redis_url, migrated_db_url, tiny_model_path)


@contextlib.asynccontextmanager
async def running_application(
    app: Application[Any, Any, Any, Any, Any, Any],
) -> AsyncIterator[Application[Any, Any, Any, Any, Any, Any]]:
    """Run the bot's ``app`` without owning the loop (no PTB updater: post_init starts the ingest).

    Order as in PTB: initialize, post_init, start ... stop, post_stop, shutdown, post_shutdown.
    """
    if app.updater is not None:
        raise ValueError("build the Application with .updater(None), as bot.telegram.app does")
    try:
        await app.initialize()
        if app.post_init:
            await app.post_init(app)
        await app.start()
        yield app
    finally:
        try:
            if app.running:
                await app.stop()
                if app.post_stop:
                    await app.post_stop(app)
        finally:
            await app.shutdown()
            if app.post_shutdown:
                await app.post_shutdown(app)
            # After a failed initialize() Application.shutdown() is a no-op and would leak the bot's
            # httpx clients; Bot.shutdown() is a no-op when they are already closed.
            await app.bot.shutdown()


@contextlib.asynccontextmanager
async def polling_bot(stack: Stack, **settings: Any) -> AsyncIterator[Any]:
    """The real Application (bot settings changed as given) polling the stand-in, its loops running."""
    changed = stack.bot.model_copy(update=settings) if settings else stack.bot
    app = build_application(changed, stack.storage, redis_url=stack.redis_url, database_url=stack.db_url)
    async with running_application(app):
        await stack.stub.wait_until_polling()
        yield app


@pytest.fixture
async def running_bot(stack: Stack) -> AsyncIterator[Any]:
    """The real Application polling the stand-in, with its answer delivery running."""
    async with polling_bot(stack) as app:
        yield app


@contextlib.asynccontextmanager
async def inprocess_worker(
    stack: Stack, name: str = "w-inproc", max_tokens: int = 24, redis_url: str | None = None
) -> AsyncIterator[Worker]:
    """A worker task in this process (the model in a thread), stopped on exit; on ``redis_url`` (a
    relay, say) instead of the stack's."""
    engine = await asyncio.to_thread(Engine, stack.model_path, n_ctx=2048, n_threads=2)
    redis = await connect(redis_url or stack.redis_url)
    worker = Worker(
        queue_from_settings(redis, stack.storage),
        engine,
        # As `serve` does: the heartbeat follows the claim time (a quarter of it).
        WorkerConfig(name, "0" * 64, max_tokens, heartbeat_s=stack.storage.queue_claim_idle_ms / 4000),
    )
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        yield worker
    finally:
        stop.set()
        try:
            await task
        finally:  # safe in any order: the worker's batched context holds a lease on the weights
            engine.close()
            await redis.aclose()


class LoggedProcess:
    """A child process whose stderr lines are collected in the background and can be awaited."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[str] = []
        self._changed = asyncio.Condition()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def start(cls, *args: str, env: Mapping[str, str]) -> LoggedProcess:
        """Start ``args`` with stdout and stderr captured together."""
        process = await asyncio.create_subprocess_exec(
            *args, env=dict(env), stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        return cls(process)

    async def _read(self) -> None:
        assert self.process.stdout is not None
        while raw := await self.process.stdout.readline():
            async with self._changed:
                self.lines.append(raw.decode("utf-8", "replace"))
                self._changed.notify_all()
        async with self._changed:
            self._changed.notify_all()

    @property
    def output(self) -> str:
        """Everything the process printed so far."""
        return "".join(self.lines)

    async def wait_for_line(self, needle: str, timeout: float = 60.0, *, since: int = 0) -> str:
        """Wait until a line (from index ``since``) contains ``needle``."""

        def found() -> str | None:
            return next((line for line in self.lines[since:] if needle in line), None)

        async with self._changed, asyncio.timeout(timeout):
            await self._changed.wait_for(lambda: found() is not None or self._reader.done())
        line = found()
        if line is None:
            raise AssertionError(f"process exited before {needle!r}:\n{self.output}")
        return line

    async def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        """Signal the process and wait for it and its output."""
        if self.process.returncode is None:
            self.process.send_signal(sig)
        async with asyncio.timeout(timeout):
            code = await self.process.wait()
            await self._reader
        return code


@pytest.fixture
async def worker_process(stack: Stack) -> AsyncIterator[Callable[..., Any]]:
    """Factory of worker processes (``python -m bot.cli worker``); all are killed after the test."""
    started: list[LoggedProcess] = []

    async def start(**extra: str) -> LoggedProcess:
        process = await LoggedProcess.start(
            sys.executable, "-m", "bot.cli", "worker", env=stack.worker_env(**extra)
        )
        started.append(process)
        await process.wait_for_line("worker.ready")
        return process

    yield start
    for process in started:
        await process.stop(signal.SIGKILL)


def answers_per_message(stub: TelegramStub) -> Counter[tuple[int, int]]:
    """How many answers (messages ending with the reminder) replied to each (chat, message)."""
    return Counter(
        (int(call.params["chat_id"]), call.params["reply_parameters"]["message_id"])
        for call in stub.calls_of("sendMessage")
        if call.ok
        and texts.REMINDER in str(call.params.get("text", ""))
        and call.params.get("reply_parameters")
    )
