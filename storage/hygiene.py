"""Erased data leaves Redis's files too, and the data directory is readable by its owner only.

Redis appends every command to its append-only file, so a deleted stream entry or key (question
text, answer text, a raw chat id) stays on disk until the file is rewritten from memory.
:func:`rewrite_aof` rewrites it when it has grown since the last rewrite. SQLite's side is
:func:`storage.db.checkpoint_wal`.
"""

from __future__ import annotations

import asyncio
import os
import stat
import time
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


async def rewrite_aof(redis: Redis, timeout: float = 60.0) -> bool:
    """Rewrite the append-only file if it grew since its last rewrite; True when it was rewritten.

    Growth means some command ran since, and any of them may have deleted or replaced a value whose
    bytes the file still holds; the rewrite keeps only what is in memory. Nothing is done when
    persistence is off or a rewrite is already running (the next call checks again). Waits for the
    rewrite to finish; AofRewriteError when it failed, was refused or took longer than ``timeout``.
    """
    info = await redis.info("persistence")
    if not int(info.get("aof_enabled", 0)) or _rewriting(info):
        return False
    if int(info.get("aof_current_size", 0)) <= int(info.get("aof_base_size", 0)):
        return False
    try:
        await redis.bgrewriteaof()  # type: ignore[no-untyped-call]
    except ResponseError as exc:
        raise AofRewriteError(str(exc).splitlines()[0]) from None
    await _wait_rewritten(redis, timeout)
    return True


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
