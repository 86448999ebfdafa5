"""Who owns a data directory: the lock of one ``meditron-bot run`` and the leftovers of a killed one.

``DATA_DIR/run.lock`` is locked with ``flock`` for as long as the run lives; the kernel releases it
when the process dies, however it dies, so a held lock always means a live run. The file also records
the run's pid and its children's pids with their start times: a later run that gets the lock ends
children of a dead run that are still alive (the start time tells a reused pid apart).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import select
import signal
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import structlog

from bot.errors import AlreadyRunningError

log = structlog.get_logger("bot.process.runlock")

LOCK_NAME = "run.lock"


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (``/proc/PID/stat``), None if gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()
    if fields[0] == "Z":
        return None
    return int(fields[19])


def end_process(pid: int, timeout: float = 15.0) -> None:
    """SIGTERM a process that is not our child, wait until it is gone, SIGKILL after ``timeout``."""
    try:
        handle = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(handle, sig)
            if select.select([handle], [], [], timeout)[0]:
                return
    finally:
        os.close(handle)


class RunLock:
    """The exclusive lock of ``directory``, held from :meth:`acquire` until :meth:`release`."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / LOCK_NAME
        self._fd: int | None = None
        self._children: dict[str, tuple[int, int | None]] = {}

    def acquire(self) -> None:
        """Take the lock or raise AlreadyRunningError; then end the live children of a dead run."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            previous = _read(fd)
            os.close(fd)
            pid = previous.get("pid")
            raise AlreadyRunningError(pid if isinstance(pid, int) else None) from None
        self._fd = fd
        _end_leftovers(_read(fd))
        self._write()

    def record(self, name: str, pid: int) -> None:
        """Remember a child's pid (and start time) so a later run can end it if this run is killed."""
        self._children[name] = (pid, start_time(pid))
        self._write()

    def _write(self) -> None:
        if self._fd is None:
            return
        state = {"pid": os.getpid(), "children": {k: list(v) for k, v in self._children.items()}}
        data = json.dumps(state).encode()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data, 0)

    def release(self) -> None:
        """Forget the children and drop the lock (the file stays: it is only ever locked)."""
        if self._fd is None:
            return
        self._children.clear()
        self._write()
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


def _read(fd: int) -> dict[str, Any]:
    """The recorded state, or {} when the file is empty or not ours."""
    raw = os.pread(fd, 65536, 0)
    try:
        state = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    return state if isinstance(state, dict) else {}


def _end_leftovers(state: dict[str, Any]) -> None:
    """End the recorded children of a dead run that still run (same pid and start time)."""
    children = state.get("children")
    if not isinstance(children, dict):
        return
    for name, entry in children.items():
        with contextlib.suppress(TypeError, ValueError):
            pid, started = int(entry[0]), entry[1]
            if started is not None and start_time(pid) == started:
                started_at = time.monotonic()
                end_process(pid)
                log.warning(
                    "run.leftover_ended", child=name, pid=pid, took_s=round(time.monotonic() - started_at, 2)
                )
