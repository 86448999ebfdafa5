"""A webhook replica killed (-9) while it holds work: the other one finishes it, each question answered once.

Two ``bot --webhook-url`` replicas and a worker on one Redis and one database (SQLite file and
PostgreSQL). The test plays Telegram and the load balancer. While B is paused (SIGSTOP, and no
connection of it in a blocking read, so only A can take the next entry), A is given:

- an answer it read from the stream and is sending (the send held before Telegram has it);
- a /help whose reply is held the same way, and a question of the same chat stored and read
  behind it: two updates A took and has not handled (updates of one chat are handled in order);
- a question POSTed through a relay that loses A's replies: stored, never 200'd;
- a question whose POST is half sent: never stored, never 200'd.

B is resumed and asked a question of its own, and A is killed. As Telegram does, every update whose
POST got no 200 is POSTed again, to the replica still up. B's liveness beat sees A gone and takes over
its unacked updates and answers. Then, once every stream is empty: each question answered exactly
once, the /help replied once, no acknowledgement twice, B took over entries of both kinds, and no
question text, Telegram id, token or secret in any process's output.
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
from redis.asyncio import Redis

from bot.process.private_redis import PrivateRedis
from bot.telegram import texts
from bot.telegram.i18n import t
from storage.queue import QueueNames
from storage.queue.updates import GROUP as UPDATES_GROUP
from tests.support.stack import LoggedProcess, answers_per_message
from tests.support.tcp_proxy import TcpProxy
from tests.support.telegram_stub import SECRET_HEADER, TelegramStub
from tests.support.waiting import eventually
from tests.support.webhooks import (
    NAMESPACE,
    SECRET,
    WEBHOOK_ARGV,
    Replica,
    consent_through,
    replica_env,
    start_replica,
)

MARKER = "qzvfailover"
USERS = tuple(3_200_001 + n for n in range(6))
U_HELD_ANSWER, U_HELP, U_LOST_REPLY, U_HALF_POST, U_ON_B, U_PLAIN = USERS
PATIENT = "600000"  # no claim time runs out here: only the liveness takeover moves A's entries


@dataclass
class Pair:
    """The deployment: A (to be killed), B, the worker; their consumer and Redis client names."""

    redis: PrivateRedis
    a: Replica
    b: Replica
    worker: Replica
    consumers: dict[str, str]  # "a"/"b" -> consumer name in the groups


def _named(url: str, name: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}client_name={name}"


@pytest.fixture
async def pair(
    telegram_stub: TelegramStub,
    migrated_db_url: str,
    tiny_model_path: Path,
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Pair]:
    redis = PrivateRedis(tmp_path_factory.mktemp("wf"))  # a unix socket path must be short
    redis.start()
    started: list[LoggedProcess] = []
    try:
        data = tmp_path / "data"
        worker_env = replica_env(
            telegram_stub, redis.url, migrated_db_url, data, QUEUE_CLAIM_IDLE_MS=PATIENT,
            MODEL_PATH=str(tiny_model_path), N_CTX="2048", MAX_ANSWER_TOKENS="8", WORKER_NAME="w1",
        )  # fmt: skip
        worker = await start_replica(["worker"], worker_env, "worker.ready", started)
        replicas, consumers = [], {}
        for name in ("a", "b"):
            env = replica_env(
                telegram_stub, _named(redis.url, f"bot-{name}"), migrated_db_url, data,
                BOT_CONSUMER=f"bot-{name}", QUEUE_CLAIM_IDLE_MS=PATIENT,
            )  # fmt: skip
            replica = await start_replica(WEBHOOK_ARGV, env, '"bot.ready"', started)
            ready = next(line for line in replica.process.lines if '"bot.ready"' in line)
            consumers[name] = str(json.loads(ready)["consumer"])
            replicas.append(replica)
        yield Pair(redis, replicas[0], replicas[1], worker, consumers)
    finally:
        for process in started:
            if process.process.returncode is None:
                process.process.send_signal(signal.SIGCONT)
            await process.stop(signal.SIGKILL)
            print(process.output[-6000:])  # shown when the test fails
        redis.stop()


async def _not_reading(redis: Redis, client_name: str) -> None:
    """No connection named ``client_name`` in a blocking read (Redis would hand it the next entry)."""

    async def idle() -> bool:
        return not any("b" in c["flags"] for c in await redis.client_list() if c["name"] == client_name)

    await eventually(idle, 30)


async def _pending(redis: Redis, stream: str, group: str, consumer: str) -> int:
    """How many entries of ``stream`` ``consumer`` took and has not acked."""
    summary = await redis.xpending(stream, group)
    counts = {_text(c["name"]): int(c["pending"]) for c in summary.get("consumers") or []}
    return counts.get(consumer, 0)


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


async def _settled(redis: Redis, names: QueueNames) -> bool:
    """Every update handled (acked updates are deleted), every question and answer read and acked."""
    if await redis.xlen(f"{NAMESPACE}:updates"):
        return False
    for stream in (names.questions, names.answers):
        for group in await redis.xinfo_groups(stream):
            if int(group["pending"]) or int(group.get("lag") or 0):
                return False
    return True


async def _post(stub: TelegramStub, update: dict[str, Any], to: str) -> int | None:
    """POST as Telegram does; None when the connection closed with no answer."""
    try:
        return await stub.deliver(update, to=to)
    except (aiohttp.ClientError, TimeoutError):
        return None


async def _half_post(url: str, update: dict[str, Any]) -> asyncio.StreamWriter:
    """Send the headers and half the body of a webhook POST, and no more."""
    parts = urlsplit(url)
    _, writer = await asyncio.open_connection(parts.hostname, parts.port)
    body = json.dumps(update).encode()
    head = (
        f"POST {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Type: application/json\r\n"
        f"{SECRET_HEADER}: {SECRET}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    writer.write(head.encode() + body[: len(body) // 2])
    await writer.drain()
    return writer


def _key(update: dict[str, Any]) -> tuple[int, int]:
    return int(update["message"]["chat"]["id"]), int(update["message"]["message_id"])


def _sent_to(stub: TelegramStub, user: int, fragment: str) -> int:
    return sum(
        1
        for c in stub.calls_of("sendMessage")
        if c.ok and int(c.params["chat_id"]) == user and fragment in str(c.params.get("text", ""))
    )


@pytest.mark.timeout(180)
async def test_a_killed_replicas_updates_and_answers_are_finished_by_the_other_once(
    pair: Pair, telegram_stub: TelegramStub
) -> None:
    stub, a, b = telegram_stub, pair.a, pair.b
    names = QueueNames(namespace=NAMESPACE)
    redis = Redis.from_url(pair.redis.url)
    relay = TcpProxy("127.0.0.1", int(urlsplit(a.webhook).port or 0))
    await relay.start()
    lossy = f"http://127.0.0.1:{relay.port}{urlsplit(a.webhook).path}"
    help_opening = t(texts.HELP, "en")[:40]
    questions: dict[int, dict[str, Any]] = {}
    try:
        for n, user in enumerate(USERS):
            first, second = (a, b) if n % 2 else (b, a)
            await consent_through(stub, user, first, second)

        # B paused, and not in a blocking read: whatever is stored next can only go to A.
        b.process.process.send_signal(signal.SIGSTOP)
        await _not_reading(redis, "bot-b")

        # 1. An answer A read and is sending (its acknowledgement went out): held before Telegram has it.
        held_answer = stub.hold_next(
            "sendMessage",
            lambda p: int(p["chat_id"]) == U_HELD_ANSWER and texts.REMINDER in str(p.get("text")),
            before=True,
        )
        questions[U_HELD_ANSWER] = stub.push_message(f"{MARKER} cough and fever?", user_id=U_HELD_ANSWER)
        assert await _post(stub, questions[U_HELD_ANSWER], a.webhook) == 200
        await asyncio.wait_for(held_answer.reached.wait(), 60)
        # 2. A /help whose reply is held, and a question of the same chat read behind it.
        held_help = stub.hold_next(
            "sendMessage",
            lambda p: int(p["chat_id"]) == U_HELP and help_opening in str(p.get("text")),
            before=True,
        )
        assert await _post(stub, stub.push_command("/help", user_id=U_HELP), a.webhook) == 200
        questions[U_HELP] = stub.push_message(f"{MARKER} rash on the arms?", user_id=U_HELP)
        assert await _post(stub, questions[U_HELP], a.webhook) == 200
        await asyncio.wait_for(held_help.reached.wait(), 30)
        updates = f"{NAMESPACE}:updates"
        await eventually(lambda: _at_least(redis, updates, UPDATES_GROUP, pair.consumers["a"], 2), 30)
        # 3. Stored by A, its 200 lost on the way back.
        relay.drop_replies()
        questions[U_LOST_REPLY] = stub.push_message(f"{MARKER} ear pain?", user_id=U_LOST_REPLY)
        lost = asyncio.create_task(_post(stub, questions[U_LOST_REPLY], lossy))
        seen = f"{NAMESPACE}:update-seen:{questions[U_LOST_REPLY]['update_id']}"
        await eventually(lambda: _exists(redis, seen), 30)
        # 4. Half sent when A dies.
        questions[U_HALF_POST] = stub.push_message(f"{MARKER} sore throat?", user_id=U_HALF_POST)
        half = await _half_post(a.webhook, questions[U_HALF_POST])
        held_updates = await _pending(redis, updates, UPDATES_GROUP, pair.consumers["a"])
        held_answers = await _pending(redis, names.answers, names.bots_group, pair.consumers["a"])
        assert held_updates >= 2 and held_answers >= 1

        # B runs again and takes a question of its own; then A is killed.
        b.process.process.send_signal(signal.SIGCONT)
        questions[U_ON_B] = stub.push_message(f"{MARKER} headache?", user_id=U_ON_B)
        on_b = asyncio.create_task(_post(stub, questions[U_ON_B], b.webhook))
        await a.process.stop(signal.SIGKILL)
        assert await lost is None  # no 200: Telegram will send it again
        half.close()
        assert await on_b == 200

        # Telegram sends every update that got no 200 again; the load balancer routes it to B.
        for user in (U_LOST_REPLY, U_HALF_POST):
            assert await _post(stub, questions[user], b.webhook) == 200
        questions[U_PLAIN] = stub.push_message(f"{MARKER} back pain?", user_id=U_PLAIN)
        assert await _post(stub, questions[U_PLAIN], b.webhook) == 200

        keys = {_key(update) for update in questions.values()}
        await eventually(lambda: _all_answered(stub, keys), 60)
        await eventually(lambda: _settled(redis, names), 60)
    finally:
        await relay.stop()
        await redis.aclose()
    counts = answers_per_message(stub)
    assert [counts[k] for k in sorted(keys)] == [1] * len(keys), stub.summary()
    assert _sent_to(stub, U_HELP, help_opening) == 1  # the held reply never reached Telegram; B's did
    for user in USERS:  # an acknowledgement A sent is not sent again by B
        assert _sent_to(stub, user, "in the queue") <= 1
    assert not [c for c in stub.calls_of("sendMessage") if c.params.get("text") == texts.TEMPORARY_ERROR]
    taken = [json.loads(line) for line in b.process.lines if '"consumer.taken_over"' in line]
    moved = Counter[str]()
    for line in taken:
        moved[str(line["group"])] += int(line["entries"])
    assert moved[UPDATES_GROUP] >= held_updates and moved[names.bots_group] >= held_answers, moved
    print(f"A held {held_updates} updates and {held_answers} answers; B took over {dict(moved)}")
    logs = a.process.output + b.process.output + pair.worker.process.output
    assert MARKER not in logs and stub.token not in logs and SECRET not in logs
    assert not any(str(user) in logs for user in USERS)


async def _at_least(redis: Redis, stream: str, group: str, consumer: str, count: int) -> bool:
    return await _pending(redis, stream, group, consumer) >= count


async def _exists(redis: Redis, key: str) -> bool:
    return bool(await redis.exists(key))


async def _all_answered(stub: TelegramStub, keys: set[tuple[int, int]]) -> bool:
    return keys <= set(answers_per_message(stub))
