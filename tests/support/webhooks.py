"""Webhook replicas for tests: ``python -m bot.cli bot --webhook-url`` (and workers) as processes, and
updates POSTed to them as Telegram (behind a load balancer) would."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.support.consent import button, consent_prompt
from tests.support.stack import PSEUDONYM_KEY, LoggedProcess
from tests.support.telegram_stub import TelegramStub

SECRET = "webhook-Secret_for-tests-0123456789"
NAMESPACE = "wh"
LOAD_BALANCER = "http://127.0.0.1:9/telegram"  # what setWebhook is given; the tests post to each replica
WEBHOOK_ARGV = ["bot", "--webhook-url", LOAD_BALANCER, "--listen", "127.0.0.1:0"]


@dataclass
class Replica:
    """One process: its output, its webhook URL (bots) and its metrics URL."""

    process: LoggedProcess
    webhook: str
    metrics: str


def _port(line: str) -> int:
    return int(json.loads(line)["port"])


def replica_env(
    stub: TelegramStub, redis_url: str, db_url: str, data_dir: Path, **extra: str
) -> dict[str, str]:
    """The environment of one process of the deployment (``extra`` added or overriding)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "REDIS_", "DATABASE_"))}
    env.update(
        TELEGRAM_BOT_TOKEN=stub.token, TELEGRAM_API_URL=stub.base_url, REDIS_URL=redis_url,
        DATABASE_URL=db_url, DATA_DIR=str(data_dir), PSEUDONYM_KEY=PSEUDONYM_KEY, QUEUE_NAMESPACE=NAMESPACE,
        QUEUE_CLAIM_IDLE_MS="2000", HYGIENE_INTERVAL_S="50", METRICS_PORT="0", WEBHOOK_SECRET=SECRET,
    )  # fmt: skip
    env.update(extra)
    return env


async def start_replica(
    argv: list[str], env: dict[str, str], ready: str, started: list[LoggedProcess]
) -> Replica:
    """Start ``python -m bot.cli *argv`` (added to ``started``) and wait for its ``ready`` line."""
    process = await LoggedProcess.start(sys.executable, "-m", "bot.cli", *argv, env=env)
    started.append(process)
    metrics_port = _port(await process.wait_for_line('-metrics"', timeout=120))
    await process.wait_for_line(ready, timeout=120)
    webhook = ""
    if "--webhook-url" in argv:
        port = _port(await process.wait_for_line('"webhook.listening"'))
        webhook = f"http://127.0.0.1:{port}/telegram"
    return Replica(process, webhook, f"http://127.0.0.1:{metrics_port}")


async def consent_through(stub: TelegramStub, user: int, first: Replica, second: Replica) -> None:
    """/start through one replica, the consent button ("service") through the other."""
    before = len(stub.calls)
    assert await stub.deliver(stub.push_command("/start", user_id=user), to=first.webhook) == 200
    prompt = (await stub.wait_for("sendMessage", consent_prompt(user), since=before, timeout=30))[-1]
    data = button(prompt, "service")
    pressed = stub.push_callback(data, user_id=user, message_id=prompt.result["message_id"])
    assert await stub.deliver(pressed, to=second.webhook) == 200
    await stub.wait_for("editMessageText", lambda c: c.params["chat_id"] == user, since=before, timeout=30)
