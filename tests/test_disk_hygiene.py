"""Erased text and raw Telegram ids leave every file under DATA_DIR and Redis's memory (issue 11, case 1),
and every file the bot writes there is readable by its owner only (case 6).

The bot runs for real against the Bot API stand-in, on a private redis-server whose append-only file
is in DATA_DIR and a SQLite database in DATA_DIR. After an answer is delivered, or after /forget or
/withdraw, the test waits for two runs of the hygiene job and then reads every byte of every file
under DATA_DIR and every key in Redis (DUMP and its value) for the question's unique marker, the
answer's text and the user's raw id. Before that, the same scan finds them (it can see).
"""

from __future__ import annotations

import asyncio
import os
import signal
import stat
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from redis.asyncio import Redis
from sqlalchemy import select

from bot.jobs.hygiene import Hygiene
from bot.process.private_redis import PrivateRedis
from bot.settings import BotSettings
from bot.telegram import texts
from bot.telegram.app import build_application
from storage.db import WalCheckpoint, checkpoint_wal, default_sqlite_url, make_engine
from storage.hygiene import rewrite_aof
from storage.migrate import upgrade_async
from storage.models import Answer
from storage.queue import QuestionMessage, QueueNames
from storage.settings import StorageSettings
from storage.transient.held import HeldQuestions
from tests.support.consent import give_consent
from tests.support.stack import PSEUDONYM_KEY, LoggedProcess, Stack, inprocess_worker, running_application
from tests.support.telegram_stub import TelegramStub, says
from tests.test_run import _env

USER = 6_183_209_457  # distinctive: its decimal form must not stay in any file or key
NAMESPACE = "hygiene"


def _marker() -> str:
    return f"hygienemarker{uuid.uuid4().hex}"


def files_containing(root: Path, needles: Iterable[bytes]) -> dict[bytes, list[str]]:
    """Which regular files under ``root`` contain which needle (every byte of every file is read)."""
    found: dict[bytes, list[str]] = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink()):
        data = path.read_bytes()
        for needle in needles:
            if needle in data:
                found.setdefault(needle, []).append(str(path.relative_to(root)))
    return found


async def redis_containing(url: str, needles: Iterable[bytes]) -> dict[bytes, list[str]]:
    """Which keys hold which needle: their name, DUMP and value; the slow log counts as a key."""
    redis = Redis.from_url(url)  # bytes, not decoded
    found: dict[bytes, list[str]] = {}
    try:
        chunks: list[tuple[str, bytes]] = [("slowlog", repr(await redis.slowlog_get(128)).encode())]
        async for key in redis.scan_iter(count=1000):
            chunks.append((key.decode(), key + (await redis.dump(key) or b"") + await _value(redis, key)))
    finally:
        await redis.aclose()
    for name, data in chunks:
        for needle in needles:
            if needle in data:
                found.setdefault(needle, []).append(name)
    return found


async def _value(redis: Redis, key: bytes) -> bytes:
    """A key's value by its type, as bytes."""
    kind = (await redis.type(key)).decode()
    reads: dict[str, Any] = {
        "string": redis.get, "stream": redis.xrange, "hash": redis.hgetall,
        "list": lambda k: redis.lrange(k, 0, -1), "set": redis.smembers,
        "zset": lambda k: redis.zrange(k, 0, -1),
    }  # fmt: skip
    return repr(await reads[kind](key)).encode() if kind in reads else b""


async def everywhere(stack: Stack, needles: Iterable[bytes]) -> dict[bytes, list[str]]:
    """Files under DATA_DIR and Redis keys holding any needle."""
    needles = list(needles)
    found = files_containing(stack.storage.data_dir, needles)
    for needle, keys in (await redis_containing(stack.redis_url, needles)).items():
        found.setdefault(needle, []).extend(f"redis:{key}" for key in keys)
    return found


async def streams_empty(redis_url: str, namespace: str, timeout: float = 10.0) -> None:
    """Wait (bounded) until the question and answer streams are empty: the answer was acked."""
    redis = Redis.from_url(redis_url)
    try:
        async with asyncio.timeout(timeout):
            while await redis.xlen(f"{namespace}:questions") or await redis.xlen(f"{namespace}:answers"):  # noqa: ASYNC110
                await asyncio.sleep(0.02)
    finally:
        await redis.aclose()


async def holders_expired(redis_url: str, namespace: str, timeout: float = 15.0) -> None:
    """Wait (bounded) until the two documented, time-bounded holders of a question's text have expired:
    the conversation memory and the "Ask a clinician" offer (1 s each on ``disk_stack``)."""
    redis = Redis.from_url(redis_url)
    try:
        async with asyncio.timeout(timeout):
            while True:
                held = [k async for k in redis.scan_iter(match=f"{namespace}:conv:*")]
                held += [k async for k in redis.scan_iter(match=f"{namespace}:handover:offer:*")]
                if not held:
                    return
                await asyncio.sleep(0.05)
    finally:
        await redis.aclose()


async def send(stub: TelegramStub, text: str, expect: str, timeout: float = 60.0) -> None:
    """Send a message or command; wait for a reply containing ``expect``."""
    before = len(stub.calls)
    if text.startswith("/"):
        stub.push_command(text, user_id=USER)
    else:
        stub.push_message(text, user_id=USER)
    await stub.wait_for("sendMessage", says(expect), since=before, timeout=timeout)


# -- fixtures: the stack with its Redis and database in DATA_DIR ------------------------------------


@pytest.fixture
def private_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateRedis]:
    """A private redis-server whose files are in ``<DATA_DIR>/redis`` (short path: unix socket)."""
    data_dir = tmp_path_factory.mktemp("dh", numbered=True) / "data"
    data_dir.mkdir(mode=0o700)
    with PrivateRedis(data_dir / "redis") as server:
        yield server


@pytest.fixture
async def disk_stack(
    telegram_stub: TelegramStub, private_redis: PrivateRedis, tiny_model_path: Path
) -> Stack:
    """Settings of a bot on the private Redis and a SQLite file, both in DATA_DIR; hygiene every 1 s."""
    data_dir = private_redis.directory.parent
    db_url = default_sqlite_url(data_dir)
    await upgrade_async(db_url)
    storage = StorageSettings(
        data_dir=data_dir, database_url=SecretStr(db_url), redis_url=SecretStr(private_redis.url),
        pseudonym_key=SecretStr(PSEUDONYM_KEY), queue_namespace=NAMESPACE, queue_claim_idle_ms=1_000,
    )  # fmt: skip
    bot = BotSettings(
        telegram_bot_token=SecretStr(telegram_stub.token), telegram_api_url=telegram_stub.base_url,
        typing_interval_s=0.2, poll_timeout_s=5, hygiene_interval_s=1,
        conversation_idle_min=1 / 60, handover_offer_h=1 / 3600,  # their bounded holders: 1 s here
    )  # fmt: skip
    return Stack(telegram_stub, storage, bot, private_redis.url, db_url, tiny_model_path)


@pytest.fixture
async def disk_bot(disk_stack: Stack) -> AsyncIterator[Any]:
    """The real Application on ``disk_stack``."""
    stack = disk_stack
    app = build_application(stack.bot, stack.storage, redis_url=stack.redis_url, database_url=stack.db_url)
    async with running_application(app):
        await stack.stub.wait_until_polling()
        yield app


async def two_more_runs(app: Any) -> None:
    """Wait until the hygiene job ran twice more: the second run started after this call."""
    hygiene = app.bot_data["hygiene"]
    assert isinstance(hygiene, Hygiene) and hygiene.rewrite_aof  # the private Redis is recognised
    await hygiene.wait_for_runs(hygiene.runs + 2, timeout=30)


# -- (1) the real bot: delivery and /forget ------------------------------------------------------


async def test_forget_leaves_no_text_and_no_raw_id_in_files_or_redis(
    disk_stack: Stack, disk_bot: Any
) -> None:
    """A kept question and answer, then /forget: afterwards no file or key holds them or the raw id."""
    stack, marker = disk_stack, _marker()
    await give_consent(stack.stub, USER, "both")  # research: the texts are kept in SQLite until /forget
    await send(stack.stub, f"What dose of zinc for a child with diarrhoea? {marker}", "in the queue")
    await two_more_runs(disk_bot)  # the question waits in the stream: rewritten files still hold it
    waiting = await everywhere(stack, [marker.encode(), str(USER).encode()])
    assert any(f.startswith("redis/appendonly") for f in waiting[marker.encode()]), waiting
    assert f"redis:{NAMESPACE}:questions" in waiting[marker.encode()]
    assert str(USER).encode() in waiting  # the scan sees the raw id where it is (in flight)
    async with inprocess_worker(stack):
        await stack.stub.wait_for("sendMessage", says(texts.REMINDER), timeout=60)
    await streams_empty(stack.redis_url, NAMESPACE)
    await holders_expired(stack.redis_url, NAMESPACE)
    answer = await _answer_text(stack)
    await two_more_runs(disk_bot)
    kept = files_containing(stack.storage.data_dir, [marker.encode(), answer])
    assert kept.keys() == {marker.encode(), answer} and all(  # only in the database, for research
        f.startswith("meditron.db") for f in kept[marker.encode()] + kept[answer]
    ), kept

    await send(stack.stub, "/forget", "I erased everything about you")
    await two_more_runs(disk_bot)
    assert await everywhere(stack, [marker.encode(), answer, str(USER).encode()]) == {}
    assert (stack.storage.data_dir / "meditron.db-wal").stat().st_size == 0


async def _answer_text(stack: Stack) -> bytes:
    """The stored answer's text (the tiny model's random words), to look for on disk."""
    engine = make_engine(stack.db_url)
    try:
        async with engine.connect() as connection:
            text = (await connection.execute(select(Answer.text))).scalar_one()
    finally:
        await engine.dispose()
    assert text is not None and len(text.strip()) >= 16, text  # long enough not to match by chance
    return text.strip().encode()


async def test_delivered_answer_leaves_nothing_without_research_consent(
    disk_stack: Stack, disk_bot: Any
) -> None:
    """Service only: once the answer is delivered, no file or key holds the question or the raw id."""
    stack, marker = disk_stack, _marker()
    await give_consent(stack.stub, USER, "service")
    async with inprocess_worker(stack):
        await send(stack.stub, f"How much ORS for a two-year-old? {marker}", texts.REMINDER)
    await streams_empty(stack.redis_url, NAMESPACE)
    await holders_expired(stack.redis_url, NAMESPACE)
    await two_more_runs(disk_bot)
    assert await everywhere(stack, [marker.encode(), str(USER).encode()]) == {}
    assert b"ORS for a two-year-old" not in (stack.storage.data_dir / "redis" / "appendonly.aof").read_bytes()


# -- (2) the pieces on their own: Redis's file and SQLite's WAL ------------------------------------


async def test_private_redis_forgets_a_deleted_stream_entry_on_rewrite(private_redis: PrivateRedis) -> None:
    """With the private server's settings a deleted entry leaves memory (DUMP) and the rewritten file."""
    gone, stays = _marker().encode(), _marker().encode()
    padding = b" and the dose, the dose, the dose" * 4  # compressible, as answers often are
    aof = private_redis.directory / "appendonly.aof"
    redis = Redis.from_url(private_redis.url)
    try:
        first = await redis.xadd("s", {"m": gone + padding})
        await redis.xadd("s", {"m": stays + padding})
        assert await rewrite_aof(redis, force=True) is not None
        assert gone in aof.read_bytes() and stays in aof.read_bytes()  # uncompressed: a scan sees it
        assert await rewrite_aof(redis) is None  # nothing written since: no rewrite
        await redis.xdel("s", first)
        await _appended(redis)  # with appendfsync everysec a busy server may write it a moment later
        assert gone in aof.read_bytes()  # the XDEL alone leaves the text in the file
        assert await rewrite_aof(redis) is not None
        assert gone not in aof.read_bytes() and stays in aof.read_bytes()
        assert gone not in (await redis.dump("s") or b"")
    finally:
        await redis.aclose()


async def _appended(redis: Redis, timeout: float = 10.0) -> None:
    """Wait until the append-only file grew past its last rewrite (the last command reached it)."""
    async with asyncio.timeout(timeout):
        while True:
            info = await redis.info("persistence")
            if int(info["aof_current_size"]) > int(info["aof_base_size"]):
                return
            await asyncio.sleep(0.01)


async def test_a_deletion_during_a_rewrite_brings_another_rewrite(private_redis: PrivateRedis) -> None:
    """The rewritten file holds what was alive when the rewrite began: a deletion meanwhile is seen."""
    gone = _marker().encode()
    aof = private_redis.directory / "appendonly.aof"
    redis = Redis.from_url(private_redis.url)
    try:
        entry = await redis.xadd("s", {"m": gone})
        quiet = await rewrite_aof(redis, force=True)
        assert quiet is not None and not quiet.overlapped
        await redis.config_set("rdb-key-save-delay", 300_000)  # 0.3 s per key: a rewrite we can enter
        rewrite = asyncio.create_task(rewrite_aof(redis, force=True))
        async with asyncio.timeout(10):
            while not (await redis.info("persistence"))["aof_rewrite_in_progress"]:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        await redis.xdel("s", entry)
        result = await rewrite
        await redis.config_set("rdb-key-save-delay", 0)
        assert result is not None and result.overlapped
        assert gone in aof.read_bytes()  # the file began before the deletion
        assert await rewrite_aof(redis) is None  # and Redis counts the deletion as rewritten
        assert await rewrite_aof(redis, force=result.overlapped) is not None
        assert gone not in aof.read_bytes()
    finally:
        await redis.aclose()


async def test_after_a_redis_restart_the_loaded_file_is_rewritten(private_redis: PrivateRedis) -> None:
    """Redis counts the file it loads as rewritten; the job rewrites it anyway when the server is new."""
    gone = _marker().encode()
    aof = private_redis.directory / "appendonly.aof"
    engine = make_engine(default_sqlite_url(private_redis.directory.parent))
    redis = Redis.from_url(private_redis.url)
    try:
        hygiene = Hygiene(redis, engine, rewrite_aof=True)
        await hygiene.run_once()  # the first rewrite of this server
        await redis.xdel("s", await redis.xadd("s", {"m": gone}))
        await redis.aclose()
        private_redis.stop()
        private_redis.start()  # loads the file, deleted entry's XADD included
        redis = Redis.from_url(private_redis.url)
        hygiene.redis = redis
        assert gone in aof.read_bytes()
        assert await rewrite_aof(redis) is None  # no growth since the load
        await hygiene.run_once()
        assert gone not in aof.read_bytes()
    finally:
        await redis.aclose()
        await engine.dispose()


async def test_sqlite_checkpoint_empties_the_wal_and_files_are_owner_only(tmp_path: Path) -> None:
    """An older, world-readable database file: connecting makes it and its WAL files owner-only."""
    database = tmp_path / "meditron.db"
    database.touch(mode=0o644)
    os.chmod(database, 0o644)  # as an older version left it (umask 022)
    url = default_sqlite_url(tmp_path)
    await upgrade_async(url)
    engine = make_engine(url)
    try:
        async with engine.connect() as connection:
            assert (await connection.exec_driver_sql("PRAGMA secure_delete")).scalar_one() == 1
            await connection.exec_driver_sql("PRAGMA user_version = 7")  # a write: one page in the WAL
            await connection.commit()
        assert (tmp_path / "meditron.db-wal").stat().st_size > 0
        assert _modes(tmp_path) == {"meditron.db": 0o600, "meditron.db-wal": 0o600, "meditron.db-shm": 0o600}
        result = await checkpoint_wal(engine)
        assert result is not None and not result.busy
        assert (tmp_path / "meditron.db-wal").stat().st_size == 0
        assert await checkpoint_wal(engine) is None  # empty: nothing to do
    finally:
        await engine.dispose()


async def test_checkpoint_gives_up_soon_while_a_reader_holds_an_old_snapshot(tmp_path: Path) -> None:
    """A reader inside a transaction keeps the WAL: the checkpoint says busy after ~2 s, not 30."""
    url = default_sqlite_url(tmp_path)
    await upgrade_async(url)
    engine = make_engine(url)
    try:
        async with engine.connect() as reader:
            raw = await reader.execution_options(isolation_level="AUTOCOMMIT")
            await raw.exec_driver_sql("BEGIN")
            await raw.exec_driver_sql("SELECT count(*) FROM users")  # a snapshot before the write
            async with engine.begin() as writer:
                await writer.exec_driver_sql("PRAGMA user_version = 3")
            started = time.monotonic()
            result = await checkpoint_wal(engine)
            waited = time.monotonic() - started
            await raw.exec_driver_sql("COMMIT")
        assert result is not None and result.busy and waited < 10, (result, waited)
        assert (await checkpoint_wal(engine)) == WalCheckpoint(False, 0, result.wal_bytes_before)
    finally:
        await engine.dispose()


async def test_a_held_question_put_back_keeps_its_expiry(
    redis_client: Redis, queue_names: QueueNames
) -> None:
    """A held group question (text, raw chat id) that another question's timer finds keeps the
    expiry it had (it once came back with a fresh hour)."""
    state = HeldQuestions(redis_client, queue_names.namespace)

    def held(question_id: str) -> QuestionMessage:
        return QuestionMessage(
            question_id=question_id, chat_id=-100_777, message_id=5, user="pseudonym-a", text="dose?",
            chat_type="supergroup", enqueued_at=time.time(),
        )  # fmt: skip

    await state.hold(held("older-question"), ttl_s=60)
    await state.hold(held("newer-question"), ttl_s=60)  # replaces the older one
    assert await state.take_held("pseudonym-a", "older-question") is None  # the older one's timer
    assert 0 < await redis_client.ttl(f"{queue_names.namespace}:field:held:pseudonym-a") <= 120
    newer = await state.take_held("pseudonym-a", "newer-question")
    assert newer is not None and newer.question_id == "newer-question"


# -- (3) ``meditron-bot run`` in a DATA_DIR that is 0755 --------------------------------------------


def _modes(root: Path) -> dict[str, int]:
    """Permission bits of everything below ``root`` (sockets and links left out)."""
    modes = {}
    for path in root.rglob("*"):
        mode = path.lstat().st_mode
        if not (stat.S_ISSOCK(mode) or stat.S_ISLNK(mode)):
            modes[str(path.relative_to(root))] = stat.S_IMODE(mode) | (0o40000 if stat.S_ISDIR(mode) else 0)
    return modes


@pytest.mark.timeout(180)
async def test_run_in_an_open_data_dir_writes_owner_only_files_and_withdraw_leaves_no_text(
    telegram_stub: TelegramStub, tiny_model_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """DATA_DIR 0755 with an old 0644 database: every file is 0600 (folders 0700); after /withdraw no
    file holds the question or the raw id."""
    stub, marker = telegram_stub, _marker()
    data_dir = tmp_path_factory.mktemp("dr", numbered=True) / "data"
    data_dir.mkdir()
    os.chmod(data_dir, 0o755)  # noqa: S103 - the situation under test
    (data_dir / "meditron.db").touch()
    os.chmod(data_dir / "meditron.db", 0o644)
    env = _env(stub, data_dir, tiny_model_path, max_tokens=16) | {"HYGIENE_INTERVAL_S": "1"}
    run = await LoggedProcess.start(sys.executable, "-m", "bot.cli", "--log-level", "DEBUG", "run", env=env)
    try:
        await run.wait_for_line("bot.ready", timeout=90)
        await give_consent(stub, USER, "both")
        await send(stub, f"Signs of severe dehydration? {marker}", texts.REMINDER)
        await streams_empty(f"unix://{data_dir / 'redis' / 'redis.sock'}", "meditron")
        assert files_containing(data_dir, [marker.encode()])  # kept for research: the scan sees it
        await send(stub, "/withdraw", "Research review withdrawn")
        seen = len(run.lines)
        await run.wait_for_line("hygiene.", since=seen, timeout=30)
        await run.wait_for_line("hygiene.", since=len(run.lines), timeout=30)  # began after the reply
        assert files_containing(data_dir, [marker.encode(), str(USER).encode()]) == {}
        modes = _modes(data_dir)
    finally:
        assert await run.stop(signal.SIGTERM) == 0, run.output
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o755  # the operator's choice stays
    assert {"meditron.db", "meditron.db-wal", "meditron.db-shm", "pseudonym.key", "redis"} <= modes.keys()
    wrong = {name: oct(mode) for name, mode in modes.items() if mode not in (0o600, 0o40700)}
    assert wrong == {}, wrong
    assert marker not in run.output and str(USER) not in run.output
