"""The supervisor and the run lock with real child processes: restarts, backoff, stop order, no orphans."""

from __future__ import annotations

import asyncio
import os
import select
import signal
import sys
import time
from pathlib import Path

import pytest

from bot.errors import AlreadyRunningError, ChildStartError
from bot.process.runlock import RunLock, start_time
from bot.process.supervisor import ChildSpec, Supervisor
from storage.queue.backoff import Backoff

# Sleeps, then exits with code 3 (its "crash"); on SIGTERM appends its name to a file and exits 0.
CHILD = """
import pathlib, signal, sys, time
name, log, life = sys.argv[1], sys.argv[2], float(sys.argv[3])
def stop(*_):
    with open(log, "a") as f:
        f.write(name + "\\n")
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
pathlib.Path(log + "." + name).touch()
time.sleep(life)
sys.exit(3)
"""

# A "parent" that supervises one long sleeper, prints its pid, and waits to be killed.
PARENT = """
import asyncio, sys
from bot.process.supervisor import ChildSpec, Supervisor
async def main():
    supervisor = Supervisor()
    pid = await supervisor.start(ChildSpec("sleeper", [sys.executable, "-c", "import time; time.sleep(300)"]))
    print("PID", pid, flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""

# A dead run's leftover: takes the lock, records a child that does not die with it, waits to be killed.
LEFTOVER = """
import subprocess, sys, time
from pathlib import Path
from bot.process.runlock import RunLock
lock = RunLock(Path(sys.argv[1]))
lock.acquire()
child = subprocess.Popen(
    [sys.executable, "-c", "import time; time.sleep(300)"], start_new_session=True, stdout=subprocess.DEVNULL
)
lock.record("worker", child.pid)
print("PID", child.pid, flush=True)
time.sleep(300)
"""


def _spec(name: str, log: Path, life: float = 300.0) -> ChildSpec:
    """A CHILD, ready once its SIGTERM handler is installed."""
    marker = Path(f"{log}.{name}")

    async def ready() -> bool:
        return await asyncio.to_thread(marker.exists)

    def prepare() -> None:
        marker.unlink(missing_ok=True)

    argv = [sys.executable, "-c", CHILD, name, str(log), str(life)]
    return ChildSpec(name, argv, prepare=prepare, ready=ready, stop_timeout_s=10)


async def _started(*args: str) -> tuple[asyncio.subprocess.Process, int]:
    """Start a helper script; returns it and the pid it prints on its "PID n" line."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", *args, stdout=asyncio.subprocess.PIPE, env={**os.environ}
    )
    assert process.stdout is not None
    async with asyncio.timeout(30):
        while not (line := (await process.stdout.readline()).decode()).startswith("PID ") and line:
            pass
    if not line:
        raise AssertionError("the helper exited before printing its child's pid")
    return process, int(line.split()[1])


async def _reap(process: asyncio.subprocess.Process) -> None:
    """Kill a helper script and read its output to the end (EOF once its children closed it too)."""
    if process.returncode is None:
        process.kill()
    await process.wait()
    assert process.stdout is not None
    await asyncio.wait_for(process.stdout.read(), 30)


def _gone_within(pid: int, timeout: float) -> bool:
    """Whether process ``pid`` (not necessarily our child) ends within ``timeout`` (pidfd: no polling)."""
    try:
        handle = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        return bool(select.select([handle], [], [], timeout)[0]) or start_time(pid) is None
    finally:
        os.close(handle)


async def test_a_dead_child_restarts_with_capped_backoff_that_resets_after_a_healthy_run(
    tmp_path: Path,
) -> None:
    """Four quick SIGKILLs: delays 0.1, 0.2, 0.4, 0.4; a child that ran past healthy_s: 0.1 again."""
    starts: list[tuple[int, float]] = []
    exits: list[tuple[str, int, float]] = []
    changed = asyncio.Event()

    def started(_name: str, pid: int) -> None:
        starts.append((pid, time.monotonic()))
        changed.set()

    async def exited(name: str, code: int, delay: float) -> None:
        exits.append((name, code, delay))

    async def next_start(count: int) -> int:
        async with asyncio.timeout(20):
            while len(starts) < count:
                changed.clear()
                await changed.wait()
        return starts[count - 1][0]

    supervisor = Supervisor(Backoff(0.1, 0.4), healthy_s=1.0, on_exit=exited, on_start=started)
    # Each run lives 1.5 s unless killed; the four killed ones are far from healthy.
    await supervisor.start(_spec("crashy", tmp_path / "stops.log", life=1.5))
    try:
        gaps = []
        for count in range(1, 5):
            pid = await next_start(count)
            killed_at = time.monotonic()
            os.kill(pid, signal.SIGKILL)
            await next_start(count + 1)
            gaps.append(starts[count][1] - killed_at)
        await next_start(6)  # the fifth ran 1.5 s, exited with 3 on its own, and was restarted
    finally:
        await supervisor.stop_all()
    print("restart gaps after SIGKILL (s):", [round(g, 3) for g in gaps])
    assert exits[:5] == [("crashy", -9, 0.1), ("crashy", -9, 0.2), ("crashy", -9, 0.4), ("crashy", -9, 0.4),
                         ("crashy", 3, 0.1)]  # fmt: skip
    for gap, (_, _, delay) in zip(gaps, exits, strict=False):
        assert delay <= gap < delay + 1.0
    assert supervisor.pid("crashy") is None
    assert _gone_within(starts[-1][0], 1.0)


async def test_children_stop_last_started_first_and_a_group_signal_misses_them(tmp_path: Path) -> None:
    """Children lead sessions of their own (Ctrl-C's group signal skips them); stop_all goes in reverse."""
    log = tmp_path / "stops.log"
    supervisor = Supervisor()
    first = await supervisor.start(_spec("redis", log))
    second = await supervisor.start(_spec("worker", log))
    try:
        assert os.getsid(first) == first and os.getpgid(second) == second
        assert os.getpgid(first) != os.getpgrp()
    finally:
        await supervisor.stop_all()
    assert log.read_text().split() == ["worker", "redis"]


async def test_a_child_that_cannot_start_is_reported() -> None:
    """A child that exits before it is ready raises ChildStartError; nothing is left to stop."""

    async def never() -> bool:
        return False

    supervisor = Supervisor()
    spec = ChildSpec("broken", [sys.executable, "-c", "raise SystemExit(5)"], ready=never)
    with pytest.raises(ChildStartError, match="broken"):
        await supervisor.start(spec)
    assert supervisor.pid("broken") is None


async def test_children_end_when_their_parent_is_killed_with_sigkill() -> None:
    """PR_SET_PDEATHSIG: SIGKILL of the supervising process ends its child too."""
    parent, child = await _started(PARENT)
    try:
        assert start_time(child) is not None
    finally:
        parent.kill()
        await parent.wait()
    assert _gone_within(child, 10.0)
    await _reap(parent)


async def test_the_lock_refuses_a_second_run_and_ends_a_killed_runs_leftovers(tmp_path: Path) -> None:
    """A live holder is named; after it is killed the next run gets the lock and ends its recorded child."""
    holder, leftover = await _started(LEFTOVER, str(tmp_path))
    try:
        with pytest.raises(AlreadyRunningError) as refused:
            RunLock(tmp_path).acquire()
        assert refused.value.pid == holder.pid
        holder.kill()
        await holder.wait()
        assert start_time(leftover) is not None  # an orphan: nothing ended it yet
        with RunLock(tmp_path):
            assert start_time(leftover) is None
            with pytest.raises(AlreadyRunningError):
                RunLock(tmp_path).acquire()
    finally:
        if holder.returncode is None:
            holder.kill()
        if start_time(leftover) is not None:
            os.kill(leftover, signal.SIGKILL)
        await _reap(holder)
    with RunLock(tmp_path):  # released: free again
        pass
