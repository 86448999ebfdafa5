"""Supervised child processes: restarted with capped backoff when they die, ended with their parent.

Each child runs in a session of its own, so a signal to the terminal's process group (Ctrl-C, or
``kill -TERM -PGID``) reaches only the parent, which then stops the children in the order it chooses.
On Linux each child also asks the kernel for SIGTERM when its parent dies (``PR_SET_PDEATHSIG``), so
even a SIGKILL of the parent leaves no orphan. The death signal follows the *thread* that forked the
child: children are spawned from the event loop's thread, which is the process's main thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import structlog

from bot.errors import ChildStartError
from storage.queue.backoff import Backoff

log = structlog.get_logger("bot.process.supervisor")

PR_SET_PDEATHSIG = 1
SPAWN_FAILED = 127
HEALTHY_S = 60.0
"""A child that ran this long before it died was healthy: its next restart waits the first delay again."""

OnExit = Callable[[str, int, float], Coroutine[Any, Any, None]]
"""Called (in a task of its own) with the child's name, exit code and the delay before its restart."""
OnStart = Callable[[str, int], None]
"""Called with the child's name and pid each time it starts."""


@dataclass(frozen=True)
class ChildSpec:
    """How to start one child: command, environment, readiness and how long a stop may take.

    ``prepare`` runs before each start (e.g. remove a stale socket); ``ready`` is polled until it
    returns True (at most ``ready_timeout_s``); without it a child is ready once spawned.
    """

    name: str
    argv: Sequence[str]
    env: Mapping[str, str] | None = None
    prepare: Callable[[], None] | None = None
    ready: Callable[[], Awaitable[bool]] | None = None
    ready_timeout_s: float = 15.0
    stop_timeout_s: float = 30.0


@dataclass
class _Child:
    """A spec with its current process and restart state."""

    spec: ChildSpec
    backoff: Backoff
    process: asyncio.subprocess.Process | None = None
    started_at: float = 0.0
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    watcher: asyncio.Task[None] | None = None


@cache
def _prctl() -> Callable[..., int] | None:
    """libc's prctl on Linux (resolved in the parent: nothing is loaded between fork and exec)."""
    if not sys.platform.startswith("linux"):
        return None
    function: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
    return function


def die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child get SIGTERM when this process dies (Linux; else None)."""
    prctl, parent = _prctl(), os.getpid()
    if prctl is None:
        return None

    def preexec() -> None:
        if prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
            os._exit(SPAWN_FAILED)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(SPAWN_FAILED)

    return preexec


class Supervisor:
    """Starts children, restarts those that die, and stops them (last started first).

    Restarts wait 0.5 s doubling up to 30 s (``backoff``) while a child keeps dying; one that ran
    ``healthy_s`` or longer before it died was healthy, and its next restart waits the first delay.
    """

    def __init__(
        self,
        backoff: Backoff | None = None,
        *,
        healthy_s: float = HEALTHY_S,
        on_exit: OnExit | None = None,
        on_start: OnStart | None = None,
    ) -> None:
        self.backoff = backoff or Backoff(first_s=0.5, cap_s=30.0)  # each child counts on a copy
        self.healthy_s = healthy_s
        self._on_exit = on_exit
        self._on_start = on_start
        self._children: dict[str, _Child] = {}
        self._notices: set[asyncio.Task[None]] = set()

    def pid(self, name: str) -> int | None:
        """Process id of the child ``name`` while it runs."""
        child = self._children.get(name)
        if child is None or child.process is None or child.process.returncode is not None:
            return None
        return child.process.pid

    async def start(self, spec: ChildSpec) -> int:
        """Start ``spec`` and wait until it is ready, then watch it; returns its pid.

        Raises ChildStartError when it exits or is not ready in time (nothing is left running).
        """
        child = _Child(spec, self.backoff.fresh())
        await self._spawn(child)
        if child.process is None or child.process.returncode is not None:
            code = SPAWN_FAILED if child.process is None else child.process.returncode
            raise ChildStartError(spec.name, f"exit code {code}")
        self._children[spec.name] = child
        child.watcher = asyncio.create_task(self._watch(child), name=f"watch-{spec.name}")
        return child.process.pid

    async def _spawn(self, child: _Child) -> None:
        """Start the child's process and wait for readiness; on failure it is stopped (or None)."""
        spec = child.spec
        if spec.prepare is not None:
            spec.prepare()
        child.started_at = time.monotonic()
        try:
            child.process = await asyncio.create_subprocess_exec(
                *spec.argv, env=dict(spec.env) if spec.env is not None else None,
                stdin=asyncio.subprocess.DEVNULL, start_new_session=True, preexec_fn=die_with_parent(),
            )  # fmt: skip
        except OSError as exc:
            child.process = None
            log.error("child.spawn_failed", child=spec.name, error=type(exc).__name__)
            return
        log.info("child.started", child=spec.name, pid=child.process.pid)
        if self._on_start is not None:
            self._on_start(spec.name, child.process.pid)
        if not await self._wait_ready(child.process, spec):
            log.error("child.not_ready", child=spec.name, pid=child.process.pid)
            await _end(child.process, spec.stop_timeout_s)
        elif spec.ready is not None:
            took = round(time.monotonic() - child.started_at, 3)
            log.info("child.ready", child=spec.name, pid=child.process.pid, took_s=took)

    @staticmethod
    async def _wait_ready(process: asyncio.subprocess.Process, spec: ChildSpec) -> bool:
        """Poll ``spec.ready`` until True, the process exits, or the timeout passes."""
        if spec.ready is None:
            return True
        deadline = time.monotonic() + spec.ready_timeout_s
        while process.returncode is None and time.monotonic() < deadline:
            if await spec.ready():
                return True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process.wait(), 0.05)
        return False

    async def _watch(self, child: _Child) -> None:
        """Wait for the child to exit; unless it is being stopped, restart it after the backoff."""
        while (code := await _exit_code(child)) is not None:
            ran = time.monotonic() - child.started_at
            if ran >= self.healthy_s:
                child.backoff.reset()
            delay = child.backoff.failed()
            log.warning(
                "child.exited", child=child.spec.name, code=code, ran_s=round(ran, 1),
                failures=child.backoff.failures, restart_in_s=delay,
            )  # fmt: skip
            self._notify(child.spec.name, code, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(child.stopping.wait(), delay)
            if child.stopping.is_set():
                return
            await self._spawn(child)

    def _notify(self, name: str, code: int, delay: float) -> None:
        """Run the exit callback in a task of its own (a slow alert never delays a restart)."""
        if self._on_exit is None:
            return
        task = asyncio.create_task(self._on_exit(name, code, delay))
        self._notices.add(task)
        task.add_done_callback(self._notices.discard)

    async def stop(self, name: str) -> int | None:
        """SIGTERM the child (SIGKILL after its stop timeout), wait for it; returns its exit code."""
        child = self._children.pop(name, None)
        if child is None:
            return None
        child.stopping.set()
        if child.watcher is not None:
            await child.watcher
        code = await _end(child.process, child.spec.stop_timeout_s) if child.process is not None else None
        log.info("child.stopped", child=name, code=code)
        return code

    async def stop_all(self) -> None:
        """Stop every child, the last started first; then wait for pending exit callbacks."""
        for name in reversed(list(self._children)):
            await self.stop(name)
        if self._notices:
            await asyncio.wait(set(self._notices), timeout=10)


async def _exit_code(child: _Child) -> int | None:
    """The exit code of the child's process once it exits; None as soon as it is being stopped."""
    if child.stopping.is_set():
        return None
    if child.process is None:
        return SPAWN_FAILED
    exited = asyncio.ensure_future(child.process.wait())
    stopping = asyncio.ensure_future(child.stopping.wait())
    await asyncio.wait({exited, stopping}, return_when=asyncio.FIRST_COMPLETED)
    exited.cancel()
    stopping.cancel()
    return None if child.stopping.is_set() else child.process.returncode


async def _end(process: asyncio.subprocess.Process, timeout: float) -> int:
    """SIGTERM, then SIGKILL after ``timeout``; returns the exit code."""
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        try:
            return await asyncio.wait_for(process.wait(), timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
    return await process.wait()


def end_process(process: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM a child started with ``subprocess``, then SIGKILL it after ``timeout``; waits for it."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
