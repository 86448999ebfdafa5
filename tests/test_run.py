"""``meditron-bot run`` as a user starts it and as faults hit it: private Redis, SQLite default, one
supervised worker; kill -9 of each part, of the main process alone and of everything; stops in order.

Each run is started in a process group of its own, as a shell would, so that the test can signal
the whole group. The children (worker, redis-server) lead sessions of their own: the test reads
their pids from the run's ``child.started`` log lines.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import select
import signal
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from bot.process.runlock import start_time
from bot.telegram import texts
from tests.support.consent import give_consent, give_consent_all
from tests.support.stack import LoggedProcess, answers_per_message
from tests.support.telegram_stub import TelegramStub
from tests.support.waiting import eventually

USER = 9876543
ADMIN = 4455667
MARKER = "zqxstiffneck"


def _env(stub: TelegramStub, data_dir: Path, model: Path, max_tokens: int, **extra: str) -> dict[str, str]:
    """Only what a newcomer sets: the token, the model file; plus where Telegram is."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TELEGRAM_", "REDIS_", "DATABASE_", "MODEL_", "ADMIN_", "MAX_SEQUENCES"))
    }
    env.pop("PSEUDONYM_KEY", None)
    env.update(
        TELEGRAM_BOT_TOKEN=stub.token, TELEGRAM_API_URL=stub.base_url, DATA_DIR=str(data_dir),
        MODEL_PATH=str(model), MAX_ANSWER_TOKENS=str(max_tokens), N_CTX="2048", POLL_TIMEOUT_S="2",
    )  # fmt: skip
    env.update(extra)
    return env


async def _start(
    stub: TelegramStub, data_dir: Path, model: Path, max_tokens: int, **extra: str
) -> LoggedProcess:
    """``python -m bot.cli run`` in a process group of its own; returns once bot and worker are ready."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot.cli", "run", env=_env(stub, data_dir, model, max_tokens, **extra),
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    run = LoggedProcess(process)
    await run.wait_for_line("worker.ready")
    await run.wait_for_line("bot.ready")
    return run


def _events(run: LoggedProcess, event: str, since: int = 0) -> list[dict[str, Any]]:
    """The run's JSON log lines of ``event`` (from line ``since``)."""
    found = []
    for line in run.lines[since:]:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("event") == event:
            found.append(record)
    return found


async def _child_pid(run: LoggedProcess, name: str, since: int = 0) -> int:
    """The pid of the newest start of child ``name`` logged from line ``since`` (waits for one)."""
    async with asyncio.timeout(60):
        while not (started := [e for e in _events(run, "child.started", since) if e["child"] == name]):
            await run.wait_for_line('"child.started"', since=len(run.lines))
    return int(started[-1]["pid"])


def _line_of(run: LoggedProcess, event: str, **fields: Any) -> int:
    """Index of the first line of ``event`` with ``fields``."""
    for index, line in enumerate(run.lines):
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if record.get("event") == event and all(record.get(k) == v for k, v in fields.items()):
                return index
    raise AssertionError(f"no {event} {fields} in:\n{run.output}")


async def _no_pending(client: Redis) -> bool:
    """No user has a pending question any more."""
    return not [key async for key in client.scan_iter(match="meditron:pending:*")]


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not)."""
    return start_time(pid) is not None


def _key(update: dict[str, Any]) -> tuple[int, int]:
    message = update["message"]
    return int(message["chat"]["id"]), int(message["message_id"])


async def _all_answered(stub: TelegramStub, keys: set[tuple[int, int]], timeout: float = 90) -> None:
    """Wait until every question in ``keys`` has at least one answer."""

    async def done() -> bool:
        return keys <= set(answers_per_message(stub))

    try:
        await eventually(done, timeout)
    except TimeoutError:
        missing = len(keys - set(answers_per_message(stub)))
        raise AssertionError(f"{missing} of {len(keys)} questions unanswered:\n{stub.summary()}") from None


def _answer_key(params: dict[str, Any]) -> tuple[int, int] | None:
    if texts.REMINDER not in str(params.get("text", "")) or not params.get("reply_parameters"):
        return None
    return int(params["chat_id"]), int(params["reply_parameters"]["message_id"])


def _assert_no_leak(output: str, stub: TelegramStub, users: tuple[int, ...] = (USER,)) -> None:
    assert MARKER not in output and stub.token not in output
    for user in (*users, ADMIN):
        assert str(user) not in output


def _ends_within(pid: int, timeout: float) -> bool:
    """Whether ``pid`` (not our child) ends within ``timeout``: a pidfd turns readable when it does."""
    try:
        handle = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        return bool(select.select([handle], [], [], timeout)[0]) or not _alive(pid)
    finally:
        os.close(handle)


async def _wait_gone(run: LoggedProcess, pids: list[int], timeout: float = 30) -> None:
    """After the main process died: every child ends by itself, and with them the run's output."""
    for pid in pids:
        assert await asyncio.to_thread(_ends_within, pid, timeout), f"orphan {pid} still runs"
    async with asyncio.timeout(timeout):
        await run.process.wait()
        await run._reader  # EOF: no process holds the run's stdout any more


@pytest.mark.timeout(240)
async def test_sigterm_to_the_group_stops_bot_worker_redis_in_order_and_loses_nothing(
    telegram_stub: TelegramStub, tiny_model_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Ten questions arrive; once the first is being answered (the others queued or just fetched),
    SIGTERM to the process group (as Ctrl-C); the log shows the bot stopped, then the worker, then
    Redis; after a restart each question is answered exactly once."""
    stub, data_dir = telegram_stub, tmp_path_factory.mktemp("run", numbered=True)
    users = [9_200_000 + n for n in range(10)]
    run = await _start(stub, data_dir, tiny_model_path, max_tokens=1600, MAX_SEQUENCES="1")
    try:
        await give_consent_all(stub, users)
        seen = len(run.lines)
        keys = {_key(stub.push_message(f"{MARKER}: fever, {n}?", user_id=u)) for n, u in enumerate(users)}
        await run.wait_for_line("question.taken", since=seen)
    finally:
        os.killpg(run.process.pid, signal.SIGTERM)
        assert await run.stop(signal.SIGTERM) == 0, run.output
    first = run.output
    order = [
        _line_of(run, "bot.stopped"),
        _line_of(run, "worker.stopped"),
        _line_of(run, "child.stopped", child="worker"),
        _line_of(run, "child.stopped", child="redis"),
    ]
    assert order == sorted(order), first
    assert not _events(run, "child.exited")
    # A question being answered at the signal is left pending by the worker, or (the tiny model on a fast
    # build) finished first; either way the count after the restart is what must hold.
    enqueued = len(_events(run, "question.enqueued", seen))

    run = await _start(stub, data_dir, tiny_model_path, max_tokens=16)
    try:
        await _all_answered(stub, keys)
    except AssertionError as exc:  # both runs' event lines (no text, no ids) say where it stopped
        raise AssertionError(f"{exc}\nfirst run:\n{first}\nafter the restart:\n{run.output}") from None
    finally:
        assert await run.stop(signal.SIGTERM) == 0, run.output
    print(f"SIGTERM to the group: {enqueued} of 10 questions enqueued before the stop; all answered after")
    assert [answers_per_message(stub)[k] for k in sorted(keys)] == [1] * 10
    _assert_no_leak(first + run.output, stub, tuple(users))
    assert (data_dir / "meditron.db").exists() and (data_dir / "redis" / "appendonly.aof").exists()
    assert oct((data_dir / "pseudonym.key").stat().st_mode & 0o777) == "0o600"


@pytest.mark.timeout(240)
async def test_a_killed_worker_is_restarted_and_its_question_answered_once(
    telegram_stub: TelegramStub, tiny_model_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """kill -9 of the worker mid-answer: one log line, an admin alert, a new worker; answered once."""
    stub, data_dir = telegram_stub, tmp_path_factory.mktemp("run", numbered=True)
    run = await _start(stub, data_dir, tiny_model_path, max_tokens=400, ADMIN_CHAT_ID=str(ADMIN))
    try:
        await give_consent(stub, USER, "service")
        worker = await _child_pid(run, "worker")
        seen = len(run.lines)
        first = _key(stub.push_message(f"{MARKER}: what to do?", user_id=USER))
        await run.wait_for_line("question.taken", since=seen)
        killed_at = time.monotonic()
        os.kill(worker, signal.SIGKILL)
        await run.wait_for_line("child.exited", since=seen)
        restarted = await _child_pid(run, "worker", since=seen)
        await run.wait_for_line("worker.ready", since=seen)
        ready_s = time.monotonic() - killed_at
        await _all_answered(stub, {first})
        answered_s = time.monotonic() - killed_at
        alert = await stub.wait_for("sendMessage", lambda c: c.params.get("chat_id") == ADMIN, timeout=30)
        async with Redis(unix_socket_path=str(data_dir / "redis" / "redis.sock")) as client:
            await eventually(lambda: _no_pending(client))  # the answer's delivery is complete
        second = _key(stub.push_message(f"{MARKER}: and now?", user_id=USER))
        await _all_answered(stub, {second})
    finally:
        assert await run.stop(signal.SIGTERM) == 0, run.output
    print(f"worker kill -9 -> new worker ready {ready_s:.2f} s, its question answered {answered_s:.2f} s")
    exited = _events(run, "child.exited")
    assert [(e["child"], e["code"], e["restart_in_s"]) for e in exited] == [("worker", -9, 0.5)]
    assert restarted != worker and not _alive(worker)
    assert "worker process exited (code -9)" in alert[0].params["text"]
    assert answers_per_message(stub)[first] == 1 and answers_per_message(stub)[second] == 1
    _assert_no_leak(run.output, stub)


@pytest.mark.timeout(240)
async def test_a_killed_redis_is_restarted_on_the_same_aof_and_the_service_answers(
    telegram_stub: TelegramStub, tiny_model_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """kill -9 of redis-server: restarted on the same append-only file; the next question is answered."""
    stub, data_dir = telegram_stub, tmp_path_factory.mktemp("run", numbered=True)
    run = await _start(stub, data_dir, tiny_model_path, max_tokens=16)
    socket = str(data_dir / "redis" / "redis.sock")
    try:
        await give_consent(stub, USER, "service")
        first = _key(stub.push_message(f"{MARKER}: first", user_id=USER))
        await _all_answered(stub, {first})
        async with Redis(unix_socket_path=socket) as client:
            await eventually(lambda: _no_pending(client))  # the answer's delivery is complete
            await client.set("test:before-kill", "kept")  # in the AOF before the reply
        redis_pid = await _child_pid(run, "redis")
        seen = len(run.lines)
        killed_at = time.monotonic()
        os.kill(redis_pid, signal.SIGKILL)
        await run.wait_for_line("child.ready", since=seen)
        back_s = time.monotonic() - killed_at
        async with Redis(unix_socket_path=socket) as client:
            assert await client.get("test:before-kill") == b"kept"
        second = _key(stub.push_message(f"{MARKER}: second", user_id=USER))
        await _all_answered(stub, {second})
        answered_s = time.monotonic() - killed_at
    finally:
        assert await run.stop(signal.SIGTERM) == 0, run.output
    exited = [(e["child"], e["code"]) for e in _events(run, "child.exited")]
    print(f"redis kill -9 -> serving again {back_s:.2f} s, next answer {answered_s:.2f} s; exits {exited}")
    assert ("redis", -9) in exited
    assert answers_per_message(stub)[first] == 1 and answers_per_message(stub)[second] == 1
    _assert_no_leak(run.output, stub)


async def _mid_answer(
    stub: TelegramStub, run: LoggedProcess, question: str
) -> tuple[list[int], tuple[int, int]]:
    """Consent, ask ``question``, return (redis and worker pids, the question's key) once a worker took it."""
    await give_consent(stub, USER, "service")
    pids = [await _child_pid(run, "redis"), await _child_pid(run, "worker")]
    seen = len(run.lines)
    key = _key(stub.push_message(question, user_id=USER))
    await run.wait_for_line("question.taken", since=seen)
    return pids, key


@pytest.mark.timeout(240)
async def test_sigkill_of_the_main_process_alone_leaves_no_orphan_and_a_restart_works(
    telegram_stub: TelegramStub, tiny_model_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """kill -9 of only the main process mid-answer: worker and redis-server end too (PDEATHSIG); the same
    DATA_DIR starts again (the lock was released by the kernel) and the question is answered once."""
    stub, data_dir = telegram_stub, tmp_path_factory.mktemp("run", numbered=True)
    run = await _start(stub, data_dir, tiny_model_path, max_tokens=1600)
    try:
        pids, key = await _mid_answer(stub, run, f"{MARKER}: what now?")
    finally:
        killed_at = time.monotonic()
        run.process.send_signal(signal.SIGKILL)
        await _wait_gone(run, pids)
    gone_s = time.monotonic() - killed_at
    first = run.output

    run = await _start(stub, data_dir, tiny_model_path, max_tokens=16)
    try:
        await _all_answered(stub, {key})
    finally:
        assert await run.stop(signal.SIGTERM) == 0, run.output
    print(f"main kill -9 -> children gone within {gone_s:.2f} s")
    assert answers_per_message(stub)[key] == 1
    assert "another `meditron-bot run`" not in run.output
    _assert_no_leak(first + run.output, stub)


@pytest.mark.timeout(240)
async def test_sigkill_of_everything_leaves_a_stale_socket_and_lock_that_a_restart_cleans(
    telegram_stub: TelegramStub, tiny_model_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """kill -9 of the whole group and of each child at once (as the OOM killer or a power cut would):
    the restart removes the dead server's socket, takes the lock, and answers the question once."""
    stub, data_dir = telegram_stub, tmp_path_factory.mktemp("run", numbered=True)
    run = await _start(stub, data_dir, tiny_model_path, max_tokens=1600)
    try:
        pids, key = await _mid_answer(stub, run, f"{MARKER}: and then?")
    finally:
        os.killpg(run.process.pid, signal.SIGKILL)
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        await _wait_gone(run, pids)
    first = run.output
    assert (data_dir / "redis" / "redis.sock").exists()  # stale: nobody listens

    run = await _start(stub, data_dir, tiny_model_path, max_tokens=16)
    try:
        await _all_answered(stub, {key})
    finally:
        assert await run.stop(signal.SIGTERM) == 0, run.output
    assert "redis.stale_socket_removed" in run.output
    assert answers_per_message(stub)[key] == 1
    _assert_no_leak(first + run.output, stub)


async def test_a_second_run_on_the_same_data_dir_is_refused(
    telegram_stub: TelegramStub, tiny_model_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """While a run lives, another on its DATA_DIR exits 2 naming it; the first keeps running."""
    stub, data_dir = telegram_stub, tmp_path_factory.mktemp("run", numbered=True)
    run = await _start(stub, data_dir, tiny_model_path, max_tokens=16)
    try:
        second = await LoggedProcess.start(
            sys.executable, "-m", "bot.cli", "run", env=_env(stub, data_dir, tiny_model_path, 16)
        )
        async with asyncio.timeout(60):
            await second.process.wait()
        assert await second.stop() == 2
        assert f"another `meditron-bot run` (pid {run.process.pid}) uses this DATA_DIR" in second.output
        assert run.process.returncode is None
    finally:
        assert await run.stop(signal.SIGTERM) == 0, run.output


@pytest.mark.timeout(360)
async def test_forty_questions_and_run_killed_midway_each_answered_exactly_once(
    telegram_stub: TelegramStub, tiny_model_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """40 people ask at once; kill -9 of the run's process group once some answers went out; after a
    restart every question has exactly one answer, and no text or Telegram id reached the logs."""
    stub, data_dir = telegram_stub, tmp_path_factory.mktemp("run", numbered=True)
    users = [9_100_000 + n for n in range(40)]
    run = await _start(stub, data_dir, tiny_model_path, max_tokens=48)
    try:
        await give_consent_all(stub, users)
        pids = [await _child_pid(run, "redis"), await _child_pid(run, "worker")]
        keys = {_key(stub.push_message(f"{MARKER} question {n}", user_id=u)) for n, u in enumerate(users)}
        tenth = await stub.wait_for(
            "sendMessage", lambda c: _answer_key(c.params) in keys, count=10, timeout=120
        )
    finally:
        os.killpg(run.process.pid, signal.SIGKILL)
        await _wait_gone(run, pids)
    first, before_kill = run.output, sum(answers_per_message(stub)[k] for k in keys)
    # Sent to Telegram but maybe not yet marked sent when the kill landed: the only ones that may repeat.
    since = stub.calls.index(tenth[9])
    in_flight = {_answer_key(c.params) for c in stub.calls[since:] if c.method == "sendMessage"}

    run = await _start(stub, data_dir, tiny_model_path, max_tokens=48)
    try:
        await _all_answered(stub, keys, timeout=240)
    finally:
        assert await run.stop(signal.SIGTERM) == 0, run.output
    answers = answers_per_message(stub)
    counts = Counter(answers[k] for k in keys)
    repeated = {k for k in keys if answers[k] > 1}
    print(
        f"40 questions: {before_kill} answered before the kill -9, {len(in_flight)} answer(s) in flight "
        f"at the kill, answers per question {dict(sorted(counts.items()))}"
    )
    assert set(counts) <= {1, 2} and sum(counts.values()) == 40  # none lost
    assert repeated <= in_flight, "only an answer Telegram took just before the kill may repeat"
    _assert_no_leak(first + run.output, stub, tuple(users))
