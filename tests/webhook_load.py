"""Webhook intake under load: `bot --webhook-url` replicas and a worker on one Redis and one database.

    python -m tests.webhook_load [--model PATH] [--rate 200] [--seconds 5] [--replicas 2] [--database-url URL]

Many people consent (not measured), then each asks one question, POSTed round robin to the replicas
(the load balancer) at ``--rate`` updates per second from a thread and event loop of their own, open
loop (a slow answer does not slow the load). Prints percentiles of:
- enqueue: POST sent -> its 200, which a replica returns only once the update is stored in Redis
  (deduplicated): the update is durable and queued for the handlers;
- store: the replicas' own ``meditron_update_store_seconds`` for the questions (Redis alone, from the
  /metrics buckets: upper bounds);
- ack and answer: POST sent -> the acknowledgement / the answer accepted by the stand-in.
A measurement tool, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import aiohttp
import httpx
from prometheus_client.parser import text_string_to_metric_families

from bot.process.private_redis import PrivateRedis
from bot.telegram import texts
from inference.synthetic import TINY, write_gemma2_gguf
from tests.ingest_load import FIRST_USER, _replies, percentiles
from tests.support.consent import button
from tests.support.stack import PSEUDONYM_KEY, LoggedProcess
from tests.support.telegram_stub import SECRET_HEADER, TelegramStub

SECRET = "load-test-webhook-secret"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _start(argv: list[str], env: dict[str, str], nice: int = 0) -> tuple[LoggedProcess, int]:
    """Start a process (logging warnings only, as in production) and wait until its /readyz says 200."""
    port = _free_port()
    process = await LoggedProcess.start(
        *(["nice", "-n", str(nice)] if nice else []),
        sys.executable,
        "-m",
        "bot.cli",
        "--log-level",
        "WARNING",
        *argv,
        env=env | {"METRICS_PORT": str(port)},
    )
    async with httpx.AsyncClient(timeout=5) as client:
        for _ in range(1500):
            if process.process.returncode is not None:
                raise RuntimeError(f"{argv[0]} exited:\n{process.output}")
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200:
                    return process, port
            await asyncio.sleep(0.2)  # a measurement tool waiting for a start, not a test
    raise RuntimeError(f"{argv[0]} never became ready:\n{process.output}")


def _post_all(
    updates: list[dict[str, Any]], urls: list[str], rate: float
) -> dict[int, tuple[float, float, int]]:
    """POST ``updates`` at ``rate``/s round robin to ``urls`` (own thread and loop): update_id -> times."""
    timings: dict[int, tuple[float, float, int]] = {}

    async def post(session: aiohttp.ClientSession, url: str, update: dict[str, Any]) -> None:
        started = time.monotonic()
        async with session.post(url, json=update, headers={SECRET_HEADER: SECRET}) as response:
            await response.read()
            timings[update["update_id"]] = (started, time.monotonic(), response.status)

    async def run() -> None:
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as session:
            tasks, start = [], time.monotonic()
            for n, (update, url) in enumerate(zip(updates, itertools.cycle(urls), strict=False)):
                delay = start + n / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)  # pacing the load, not synchronisation
                tasks.append(asyncio.create_task(post(session, url, update)))
            await asyncio.gather(*tasks)

    thread = threading.Thread(target=lambda: asyncio.run(run()), name="load")
    thread.start()
    thread.join()
    return timings


async def _deliver_all(stub: TelegramStub, updates: list[dict[str, Any]], urls: list[str]) -> None:
    """Set-up traffic (not measured): every update POSTed, 32 at a time."""
    slots = asyncio.Semaphore(32)

    async def one(update: dict[str, Any], url: str) -> None:
        async with slots:
            status = await stub.deliver(update, to=url)
            assert status == 200, status

    await asyncio.gather(*(one(u, url) for u, url in zip(updates, itertools.cycle(urls), strict=False)))


def _store_quantiles(after: list[str], before: list[str]) -> dict[str, float]:
    """p50/p99 upper bounds of meditron_update_store_seconds over every replica (bucket boundaries),
    for the stores between the ``before`` and ``after`` scrapes."""
    buckets: dict[float, float] = {}
    for sign, texts_ in ((1, after), (-1, before)):
        for text in texts_:
            for family in text_string_to_metric_families(text):
                for sample in family.samples:
                    if sample.name == "meditron_update_store_seconds_bucket":
                        bound = float(sample.labels["le"])
                        buckets[bound] = buckets.get(bound, 0.0) + sign * sample.value
    total = buckets.get(float("inf"), 0.0)
    result: dict[str, float] = {"n": total}
    for name, q in (("p50_le_ms", 0.5), ("p99_le_ms", 0.99)):
        result[name] = next((b * 1000 for b in sorted(buckets) if buckets[b] >= q * total), float("inf"))
    return result


async def _scrape(ports: list[int]) -> list[str]:
    """The /metrics text of each replica."""
    async with httpx.AsyncClient(timeout=10) as client:
        return [(await client.get(f"http://127.0.0.1:{port}/metrics")).text for port in ports]


async def measure(
    model: Path, rate: float, seconds: float, replicas: int, db_url: str | None, worker_nice: int = 0
) -> dict[str, Any]:
    """Run the deployment and return the figures."""
    stub = TelegramStub()
    await stub.start()
    users = [FIRST_USER + i for i in range(max(1, int(rate * seconds)))]
    started: list[LoggedProcess] = []
    with tempfile.TemporaryDirectory(prefix="whl") as data, PrivateRedis(Path(data) / "r") as redis:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "DATABASE_", "TELEGRAM_"))}
        env.update(
            TELEGRAM_BOT_TOKEN=stub.token, TELEGRAM_API_URL=stub.base_url, DATA_DIR=data, REDIS_URL=redis.url,
            PSEUDONYM_KEY=PSEUDONYM_KEY, WEBHOOK_SECRET=SECRET, MODEL_PATH=str(model),
            MAX_ANSWER_TOKENS="8", N_CTX="2048", BUSY_QUEUE_SIZE="100000", USER_MESSAGES_PER_MINUTE="60",
        )  # fmt: skip
        if db_url:
            env["DATABASE_URL"] = db_url
        try:
            process, _ = await _start(["worker"], env, worker_nice)
            started.append(process)
            metrics_ports, urls = [], []
            for n in range(replicas):  # one after the other: the first migrates the database
                listen = _free_port()
                argv = [
                    "bot",
                    "--webhook-url",
                    "http://127.0.0.1:9/telegram",
                    "--listen",
                    f"127.0.0.1:{listen}",
                ]
                process, port = await _start(argv, env | {"BOT_CONSUMER": f"bot-{n}"})
                started.append(process)
                metrics_ports.append(port)
                urls.append(f"http://127.0.0.1:{listen}/telegram")
            before = len(stub.calls)
            await _deliver_all(stub, [stub.push_command("/start", user_id=u) for u in users], urls)
            prompts = await stub.wait_for(
                "sendMessage", lambda c: bool(c.params.get("reply_markup")), count=len(users), timeout=900,
                since=before,
            )  # fmt: skip
            presses = [
                stub.push_callback(
                    button(p, "service"),  # the current consent version's button
                    user_id=int(p.params["chat_id"]),
                    message_id=p.result["message_id"],
                )
                for p in prompts
            ]
            await _deliver_all(stub, presses, urls)
            await stub.wait_for("editMessageText", count=len(users), timeout=900, since=before)
            questions = [
                stub.push_message(f"Question {n}: fever and cough in a child, what to do?", user_id=u)
                for n, u in enumerate(users)
            ]
            before_scrape = await _scrape(metrics_ports)
            began = time.monotonic()
            timings = await asyncio.to_thread(_post_all, questions, urls, rate)
            took = time.monotonic() - began
            after_scrape = await _scrape(metrics_ports)  # every store of the questions ended before its 200
            await stub.wait_for(
                "sendMessage", lambda c: texts.REMINDER in str(c.params.get("text", "")),
                count=len(users), timeout=1800,
            )  # fmt: skip
        finally:
            for process in started:
                await process.stop()
            await stub.stop()
    sent = {(q["message"]["chat"]["id"], q["message"]["message_id"]): q["update_id"] for q in questions}
    acks, answers = _replies(stub, "in the queue"), _replies(stub, texts.REMINDER)
    posted = {u: t[0] for u, t in timings.items()}
    return {
        "replicas": replicas,
        "worker_nice": worker_nice,
        "rate_asked": rate,
        "rate_sent": round(len(timings) / took, 1),
        "updates": len(timings),
        "refused_or_failed": sum(1 for t in timings.values() if t[2] != 200),
        "enqueue": percentiles([end - start for start, end, _ in timings.values()]),
        "store_server_side": _store_quantiles(after_scrape, before_scrape),
        "ack": percentiles([acks[k] - posted[u] for k, u in sent.items() if k in acks]),
        "answer": percentiles([answers[k] - posted[u] for k, u in sent.items() if k in answers]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--model", type=Path, help="a GGUF file (default: a tiny random gemma2 one)")
    parser.add_argument(
        "--rate", type=float, default=200.0, help="questions per second, all replicas together"
    )
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument(
        "--worker-nice", type=int, default=0,
        help="run the worker at this nice level (19: as if the model had cores of its own)",
    )  # fmt: skip
    parser.add_argument("--database-url", help="default: SQLite in the temporary data directory")
    args = parser.parse_args()
    if args.model is None:
        args.model = write_gemma2_gguf(Path(tempfile.mkdtemp(prefix="model")) / "tiny-gemma2.gguf", TINY)
    figures = asyncio.run(
        measure(args.model, args.rate, args.seconds, args.replicas, args.database_url, args.worker_nice)
    )
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
