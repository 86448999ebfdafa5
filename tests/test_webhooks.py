"""Two webhook replicas (``python -m bot.cli bot --webhook-url``) and a worker on one Redis and one database.

The stand-in plays Telegram and the load balancer: it POSTs each update to the replica the test chooses.
An update posted to both replicas, and posted again after its 200 (Telegram's retry), is answered once;
a POST without the secret is refused and never stored; the counters on /metrics move; /readyz turns
503 when Redis stops (a private redis-server of this test's own, so stopping it disturbs no other test).
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from bot.process.private_redis import PrivateRedis
from bot.telegram import texts
from tests.support.stack import LoggedProcess
from tests.support.telegram_stub import Call, TelegramStub
from tests.support.webhooks import (
    LOAD_BALANCER,
    NAMESPACE,
    SECRET,
    WEBHOOK_ARGV,
    Replica,
    consent_through,
    replica_env,
    start_replica,
)

ADA, BEN, EVE = 3_100_001, 3_100_002, 3_100_003


@dataclass
class Deployment:
    redis: PrivateRedis
    a: Replica
    b: Replica
    worker: Replica


@pytest.fixture
async def deployment(
    telegram_stub: TelegramStub,
    migrated_db_url: str,
    tiny_model_path: Path,
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Deployment]:
    redis = PrivateRedis(tmp_path_factory.mktemp("wr"))  # a unix socket path must be short
    redis.start()
    started: list[LoggedProcess] = []
    try:
        data = tmp_path / "data"
        worker_env = replica_env(
            telegram_stub, redis.url, migrated_db_url, data,
            MODEL_PATH=str(tiny_model_path), N_CTX="2048", MAX_ANSWER_TOKENS="8", WORKER_NAME="w1",
        )  # fmt: skip
        worker = await start_replica(["worker"], worker_env, "worker.ready", started)
        replicas = []
        for name in ("bot-a", "bot-b"):
            env = replica_env(telegram_stub, redis.url, migrated_db_url, data, BOT_CONSUMER=name)
            replicas.append(await start_replica(WEBHOOK_ARGV, env, '"bot.ready"', started))
        a, b = replicas
        yield Deployment(redis, a, b, worker)
    finally:
        for process in started:
            await process.stop(signal.SIGKILL)
            print(process.output[-4000:])  # shown when the test fails
        redis.stop()


def _to(user: int, fragment: str) -> Callable[[Call], bool]:
    return lambda c: int(c.params.get("chat_id", 0)) == user and fragment in str(c.params.get("text", ""))


def _sample(text: str, name: str, **labels: str) -> float:
    """The sum of the samples called ``name`` whose labels include ``labels``."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )


async def _metrics(client: httpx.AsyncClient, *replicas: Replica) -> str:
    return "\n".join([(await client.get(f"{r.metrics}/metrics")).text for r in replicas])


async def _metrics_when(
    client: httpx.AsyncClient, replicas: list[Replica], done: Callable[[str], bool], timeout: float = 30
) -> str:
    """The replicas' metrics, read until ``done`` says they show what the test waits for."""
    async with asyncio.timeout(timeout):
        while not done(text := await _metrics(client, *replicas)):  # noqa: ASYNC110 - another process's state
            await asyncio.sleep(0.05)
    return text


def _label_dict(labels: tuple[str, ...]) -> dict[str, str]:
    return dict(zip(labels[::2], labels[1::2], strict=True))


async def _counted(
    client: httpx.AsyncClient,
    replicas: list[Replica],
    expected: dict[tuple[str, tuple[str, ...]], int],
    before: str,
) -> str:
    """The replicas' metrics once every expected counter moved by at least its count; then exactly."""

    def moved(text: str, name: str, labels: tuple[str, ...]) -> float:
        return _sample(text, name, **_label_dict(labels)) - _sample(before, name, **_label_dict(labels))

    text = await _metrics_when(
        client, replicas, lambda t: all(moved(t, *k) >= n for k, n in expected.items())
    )
    assert {k: moved(text, *k) for k in expected} == expected
    return text


async def test_two_replicas_answer_each_update_once_and_report_it(
    deployment: Deployment, telegram_stub: TelegramStub
) -> None:
    stub, a, b = telegram_stub, deployment.a, deployment.b
    assert stub.webhook is not None
    assert stub.webhook["url"] == LOAD_BALANCER and stub.webhook["secret_token"] == SECRET
    assert not stub.calls_of("getUpdates")  # no replica polls
    redis = Redis.from_url(deployment.redis.url)
    async with httpx.AsyncClient(timeout=10) as client:
        for replica in (a, b, deployment.worker):
            assert (await client.get(f"{replica.metrics}/healthz")).status_code == 200
            ready = await client.get(f"{replica.metrics}/readyz")
            assert ready.status_code == 200, ready.text
        before = await _metrics(client, a, b)

        # Without the secret, or with a wrong one: refused, and nothing of it is stored.
        refused = stub.push_command("/start", user_id=EVE)
        assert await stub.deliver(refused, to=a.webhook, secret=None) == 403
        assert await stub.deliver(refused, to=b.webhook, secret="not-the-secret") == 403
        assert not await redis.exists(f"{NAMESPACE}:update-seen:{refused['update_id']}")

        await consent_through(stub, ADA, a, b)
        await consent_through(stub, BEN, b, a)

        # One question reaches both replicas at once, then Telegram retries it at A after its 200.
        question = stub.push_message("Fever and a stiff neck in a child: what to do?", user_id=ADA)
        statuses = await asyncio.gather(
            stub.deliver(question, to=a.webhook), stub.deliver(question, to=b.webhook)
        )
        assert list(statuses) == [200, 200]
        assert await stub.deliver(question, to=a.webhook) == 200
        await stub.wait_for("sendMessage", _to(ADA, texts.REMINDER), timeout=90)
        # Another question afterwards, answered too: by then a second answer to the first would be due.
        other = stub.push_message("How much ORS for a 2-year-old?", user_id=BEN)
        assert await stub.deliver(other, to=b.webhook) == 200
        await stub.wait_for("sendMessage", _to(BEN, texts.REMINDER), timeout=90)
        assert len([c for c in stub.calls_of("sendMessage") if _to(ADA, texts.REMINDER)(c)]) == 1
        assert len([c for c in stub.calls_of("sendMessage") if _to(ADA, "in the queue")(c)]) <= 1
        assert not [c for c in stub.calls_of("sendMessage") if int(c.params["chat_id"]) == EVE]

        # Some counters move just after what the stand-in sees (an update is counted once its handlers
        # returned and it is acked, a delivery once Telegram accepted it, an answer once published):
        # read them (another process's state) until they reach the expected counts, then check those
        # are exact: nothing counted twice.
        expected_bots = {
            ("meditron_webhook_requests_total", ("outcome", "refused")): 2,
            ("meditron_webhook_requests_total", ("outcome", "duplicate")): 2,
            ("meditron_webhook_requests_total", ("outcome", "stored")): 6,
            ("meditron_updates_total", ("type", "message")): 4,  # two /start and two questions
            ("meditron_updates_total", ("type", "callback_query")): 2,
            ("meditron_questions_enqueued_total", ()): 2,
            ("meditron_consent_changes_total", ("scope", "service", "value", "granted")): 2,
            ("meditron_update_store_seconds_count", ()): 8,  # stored and duplicate ones
            ("meditron_delivery_seconds_count", ()): 2,
        }
        expected_worker = {
            ("meditron_answers_total", ("status", "ok")): 2,
            ("meditron_first_token_seconds_count", ()): 2,
            ("meditron_queue_wait_seconds_count", ()): 2,
            ("meditron_generation_seconds_count", ()): 2,
        }
        after = await _counted(client, [a, b], expected_bots, before)
        worker = await _counted(client, [deployment.worker], expected_worker, "")
        assert _sample(worker, "meditron_tokens_total", kind="completion") > 0
        assert _sample(worker, "meditron_batch_slots") >= 1
        assert (
            "meditron_acknowledgement_seconds_bucket" in after and "meditron_telegram_429_total" not in worker
        )
        for text in (after, worker):  # no label carries an id or a text
            for family in text_string_to_metric_families(text):
                for sample in family.samples:
                    values = " ".join(sample.labels.values())
                    assert not any(str(n) in values for n in (ADA, BEN, EVE)), sample
                    assert "Fever" not in values and "ORS" not in values, sample

        # Redis stops: every process says it is not ready, and why; alive all the same.
        await redis.aclose()
        deployment.redis.stop()
        for replica in (a, b, deployment.worker):
            ready = await client.get(f"{replica.metrics}/readyz")
            assert ready.status_code == 503, ready.text
            assert ready.json()["checks"]["redis"] is False
            assert (await client.get(f"{replica.metrics}/healthz")).status_code == 200
        assert (await client.get(f"{a.metrics}/readyz")).json()["checks"]["database"] is True
        # And an update that cannot be stored is not confirmed: Telegram will send it again.
        late = stub.push_message("Still there?", user_id=ADA)
        assert await stub.deliver(late, to=a.webhook) == 503
