"""The hygiene job: erased text and raw Telegram ids leave the files under DATA_DIR within a minute.

Deleting a stream entry or a key removes it from Redis's memory, and erasing a text sets a column
to NULL, but the bytes stay in Redis's append-only file and in SQLite's write-ahead log. Every
HYGIENE_INTERVAL_S seconds this job rewrites the append-only file (of the private Redis of ``run``,
any Redis whose files are under DATA_DIR, or an external one with REDIS_AOF_REWRITE): at start and
after Redis restarted (a loaded file counts as rewritten), whenever it grew since the last rewrite,
and again after a rewrite that data changed during.
It also checkpoints a non-empty SQLite WAL into the database file and truncates it. Being periodic,
it covers every writer alike: erasure, retention, delivered answers, the stream of raw updates,
other processes on the same database. One bot process per interval runs it (a lease in Redis); the
lease is itself a write, so a rewrite follows each run, as it does anyway while a worker renews
its capacity key.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine
from telegram.ext import ContextTypes, Job, JobQueue

from bot.jobs.lease import Leases, run_leased
from bot.settings import BotSettings
from storage.db import checkpoint_wal
from storage.errors import AofRewriteError
from storage.hygiene import keeps_files_in, restrict_tree, rewrite_aof, server_run_id
from storage.settings import StorageSettings

log = structlog.get_logger("bot.hygiene")

JOB_NAME = "hygiene"
FIRST_RUN = timedelta(seconds=1)


@dataclass
class Hygiene:
    """What one run cleans, and how many runs finished (``wait_for_runs`` lets callers wait on it)."""

    redis: Redis
    engine: AsyncEngine
    rewrite_aof: bool
    leases: Leases | None = None  # the job runs where the round's lease is taken
    interval_s: float = 30.0
    runs: int = 0
    _force: bool = False  # rewrite even without growth: after a rewrite that data changed during
    _server: str | None = None  # run id of the Redis server last rewritten (another: rewrite)
    _ran: asyncio.Condition = field(default_factory=asyncio.Condition, repr=False)
    _rewriting: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)

    async def rewrite_now(self) -> bool:
        """Rewrite the append-only file at once (a voice note's audio just left the stream); a
        rewrite already running here is enough. True when this call rewrote it."""
        if self._rewriting.locked():
            return False
        async with self._rewriting:
            return await self._rewrite()

    async def run_once(self) -> None:
        """Rewrite the append-only file and checkpoint the WAL if needed; problems are logged."""
        started = time.monotonic()
        rewritten = await self._rewrite()
        checkpointed = await self._checkpoint()
        seconds = round(time.monotonic() - started, 3)
        if rewritten or checkpointed:
            log.info("hygiene.done", aof_rewritten=rewritten, wal_checkpointed=checkpointed, seconds=seconds)
        else:
            log.debug("hygiene.idle", seconds=seconds)
        async with self._ran:
            self.runs += 1
            self._ran.notify_all()

    async def _rewrite(self) -> bool:
        """Rewrite Redis's append-only file when it grew (only if this Redis is ours to rewrite)."""
        if not self.rewrite_aof:
            return False
        try:
            server = await server_run_id(self.redis)  # new at start, and after Redis restarted
            result = await rewrite_aof(self.redis, force=self._force or server != self._server)
        except (RedisError, OSError, AofRewriteError) as exc:
            reason = str(exc) if isinstance(exc, AofRewriteError) else None
            log.warning("hygiene.aof_failed", error=type(exc).__name__, reason=reason)
            return False
        if result is None:
            return False
        self._force, self._server = result.overlapped, server
        return True

    async def _checkpoint(self) -> bool:
        """Checkpoint and truncate a non-empty SQLite write-ahead log."""
        try:
            result = await checkpoint_wal(self.engine)
        except (SQLAlchemyError, OSError) as exc:
            log.warning("hygiene.wal_failed", error=type(exc).__name__)
            return False
        if result is not None and result.busy:
            log.warning("hygiene.wal_busy", frames=result.frames)
            return False
        return result is not None

    async def wait_for_runs(self, count: int, timeout: float = 60.0) -> None:
        """Wait until ``count`` runs have finished in total."""
        async with self._ran, asyncio.timeout(timeout):
            await self._ran.wait_for(lambda: self.runs >= count)


async def hygiene_job(context: ContextTypes.DEFAULT_TYPE) -> None:
    """One run of the hygiene job."""
    assert context.job is not None
    hygiene = context.job.data
    assert isinstance(hygiene, Hygiene)
    await run_leased(hygiene.leases, JOB_NAME, hygiene.interval_s, hygiene.run_once)


async def start_hygiene(
    job_queue: JobQueue[Any],
    redis: Redis,
    engine: AsyncEngine,
    settings: BotSettings,
    storage: StorageSettings,
    *,
    leases: Leases | None = None,
) -> Hygiene:
    """Restrict the data directory to its owner, then run the job every HYGIENE_INTERVAL_S seconds."""
    data_dir = storage.ensure_data_dir()
    restricted = restrict_tree(data_dir)
    if restricted:
        log.info("hygiene.permissions_restricted", paths=restricted)
    ours = settings.redis_aof_rewrite or await keeps_files_in(redis, data_dir)
    hygiene = Hygiene(redis, engine, rewrite_aof=ours, leases=leases, interval_s=settings.hygiene_interval_s)
    job: Job[Any] = job_queue.run_repeating(
        hygiene_job, interval=settings.hygiene_interval_s, first=FIRST_RUN, name=JOB_NAME, data=hygiene
    )
    log.info("hygiene.scheduled", interval_s=settings.hygiene_interval_s, aof_rewrite=ours, job=job.name)
    return hygiene
