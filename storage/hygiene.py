"""Erased data leaves Redis's files too, and the data directory is readable by its owner only.

Redis appends every command to its append-only file, so a deleted stream entry or key (question
text, answer text, a raw chat id) stays on disk until the file is rewritten from memory.
:func:`rewrite_aof` rewrites it when anything changed since the last rewrite. SQLite's side is
:func:`storage.db.checkpoint_wal`.
"""

from __future__ import annotations

import asyncio
import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from storage.errors import AofRewriteError

REWRITE_POLL_S = 0.05


async def keeps_files_in(redis: Redis, directory: Path) -> bool:
    """Whether this Redis server keeps its files under ``directory`` (False if CONFIG is refused)."""
    try:
        reply: dict[str, Any] = await redis.config_get("dir")
    except RedisError:  # managed servers often disable CONFIG
        return False
    where = reply.get("dir")
    return bool(where) and _is_under(Path(str(where)), directory)


def _is_under(path: Path, root: Path) -> bool:
    """Whether ``path`` is ``root`` or inside it, after resolving links."""
    return path.resolve().is_relative_to(root.resolve())


@dataclass(frozen=True)
class WriteMark:
    """How far a Redis server's writes had gone: whatever appends to the append-only file moves it.

    ``changes`` counts commands that changed data (and some reads, e.g. of a consumer's pending
    entries), ``expired`` and ``evicted`` the keys Redis deleted by itself; ``run_id`` is the server's.
    """

    run_id: str
    changes: int
    expired: int
    evicted: int

    @classmethod
    def of(cls, server: dict[str, Any], persistence: dict[str, Any], stats: dict[str, Any]) -> WriteMark:
        """The mark in the INFO sections server, persistence and stats."""
        return cls(
            run_id=str(server.get("run_id", "")),
            changes=int(persistence.get("rdb_changes_since_last_save", 0)),
            expired=int(stats.get("expired_keys", 0)),
            evicted=int(stats.get("evicted_keys", 0)),
        )


async def server_run_id(redis: Redis) -> str:
    """The server's run id (a new one after every restart)."""
    return str((await redis.info("server")).get("run_id", ""))


async def write_mark(redis: Redis) -> WriteMark:
    """The server's current write mark."""
    return WriteMark.of(
        await redis.info("server"), await redis.info("persistence"), await redis.info("stats")
    )


@dataclass(frozen=True)
class AofRewrite:
    """A finished rewrite. ``overlapped``: data changed while it ran, and Redis put those commands
    into the new file, so it may hold a value deleted meanwhile: rewrite again (``force``)."""

    overlapped: bool


async def rewrite_aof(redis: Redis, *, force: bool = False, timeout: float = 60.0) -> AofRewrite | None:
    """Rewrite the append-only file if it grew since its last rewrite (or ``force``); None if not.

    Growth means a command was appended, and it may have deleted or replaced a value whose bytes the
    file still holds; the rewrite keeps only what is in memory. Force it at start (the file may
    hold what was deleted before a restart: Redis counts a loaded file as rewritten) and after an
    overlapped rewrite. Nothing is done when persistence is off or a rewrite is already running.
    Waits for the rewrite; AofRewriteError when it failed, was refused or took over ``timeout`` s.
    """
    info = await redis.info("persistence")
    if not int(info.get("aof_enabled", 0)) or _rewriting(info):
        return None
    if not force and int(info.get("aof_current_size", 0)) <= int(info.get("aof_base_size", 0)):
        return None
    try:
        async with redis.pipeline(transaction=True) as pipe:  # the mark and the fork at one instant
            pipe.info("server")
            pipe.info("persistence")
            pipe.info("stats")
            pipe.bgrewriteaof()  # type: ignore[no-untyped-call]
            server, persistence, stats, _ = await pipe.execute()
    except ResponseError as exc:
        raise AofRewriteError(str(exc).splitlines()[0]) from None
    await _wait_rewritten(redis, timeout)
    return AofRewrite(overlapped=await write_mark(redis) != WriteMark.of(server, persistence, stats))


def _rewriting(info: dict[str, Any]) -> bool:
    """Whether a rewrite is running or scheduled (after a background save)."""
    return bool(int(info.get("aof_rewrite_in_progress", 0)) or int(info.get("aof_rewrite_scheduled", 0)))


async def _wait_rewritten(redis: Redis, timeout: float) -> None:
    """Poll INFO until the rewrite is over (Redis announces nothing); raise if it failed."""
    deadline = time.monotonic() + timeout
    while True:
        info = await redis.info("persistence")
        if not _rewriting(info):
            break
        if time.monotonic() > deadline:
            raise AofRewriteError(f"still running after {timeout:.0f} s")
        await asyncio.sleep(REWRITE_POLL_S)
    if info.get("aof_last_bgrewrite_status") != "ok":
        raise AofRewriteError(f"status {info.get('aof_last_bgrewrite_status')}")


def restrict_tree(root: Path) -> int:
    """Take group and other permissions off every file and folder below ``root``; returns how many.

    ``root`` itself keeps its mode (the operator chose it); symbolic links and sockets are skipped.
    """
    changed = 0
    for folder, folders, files in os.walk(root):
        for name in (*folders, *files):
            path = Path(folder, name)
            try:
                mode = path.lstat().st_mode
                if stat.S_ISLNK(mode) or stat.S_ISSOCK(mode) or not stat.S_IMODE(mode) & 0o077:
                    continue
                os.chmod(path, stat.S_IMODE(mode) & 0o700)
            except FileNotFoundError:  # a temporary file that went away meanwhile
                continue
            changed += 1
    return changed
