"""Ingest under load, through the real `meditron-bot run` and the Bot API stand-in.

    python -m tests.ingest_load --model PATH [--rate 200] [--seconds 5] [--max-tokens 8]

Many people consent, then each asks one question, the questions arriving at ``--rate`` updates per
second. Prints percentiles of:
- durable: update pushed -> confirmed by the bot's next getUpdates offset, which the bot sends only
  after the update is stored in Redis (an upper bound of the time to durability);
- ack: update pushed -> the acknowledgement accepted by the stand-in (Telegram's outgoing limits,
  about 30 messages per second, apply: PTB's rate limiter);
- answer: update pushed -> the answer accepted.
A measurement tool, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bot.telegram import texts
from inference.synthetic import TINY, write_gemma2_gguf
from tests.support.consent import give_consent_all
from tests.support.stack import LoggedProcess
from tests.support.telegram_stub import TelegramStub

FIRST_USER = 8_100_000


def percentiles(values: list[float]) -> dict[str, float]:
    """p50, p95, p99 and max in milliseconds."""
    if not values:
        return {}
    ordered = sorted(values)
    cut = statistics.quantiles(ordered, n=100, method="inclusive") if len(ordered) > 1 else ordered * 99
    return {
        "n": len(ordered),
        "p50_ms": round(cut[49] * 1000, 1),
        "p95_ms": round(cut[94] * 1000, 1),
        "p99_ms": round(cut[98] * 1000, 1),
        "max_ms": round(ordered[-1] * 1000, 1),
    }


async def _ask_all(stub: TelegramStub, users: list[int], rate: float) -> dict[tuple[int, int], int]:
    """One question per user at ``rate`` updates/s; returns (chat, message) -> update_id."""
    sent: dict[tuple[int, int], int] = {}
    start = time.monotonic()
    for n, user in enumerate(users):
        delay = start + n / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)  # pacing the load, not synchronisation
        update = stub.push_message(f"Question {n}: fever and cough in a child, what to do?", user_id=user)
        sent[(user, update["message"]["message_id"])] = update["update_id"]
    return sent


def _replies(stub: TelegramStub, needle: str) -> dict[tuple[int, int], float]:
    """(chat, message replied to) -> when the stand-in accepted a message containing ``needle``."""
    found: dict[tuple[int, int], float] = {}
    for call in stub.calls_of("sendMessage"):
        reply = call.params.get("reply_parameters")
        if call.ok and reply and needle in str(call.params.get("text", "")):
            found.setdefault((int(call.params["chat_id"]), int(reply["message_id"])), call.at)
    return found


async def measure(model: Path, rate: float, seconds: float, max_tokens: int) -> dict[str, object]:
    """Run the bot and return the figures."""
    stub = TelegramStub()
    await stub.start()
    users = [FIRST_USER + i for i in range(max(1, int(rate * seconds)))]
    with tempfile.TemporaryDirectory(prefix="load") as data:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "DATABASE_"))}
        env.update(
            TELEGRAM_BOT_TOKEN=stub.token, TELEGRAM_API_URL=stub.base_url, DATA_DIR=data,
            MODEL_PATH=str(model), MAX_ANSWER_TOKENS=str(max_tokens), N_CTX="2048",
            BUSY_QUEUE_SIZE="100000", USER_MESSAGES_PER_MINUTE="60",
        )  # fmt: skip
        run = await LoggedProcess.start(
            sys.executable, "-m", "bot.cli", "--log-level", "WARNING", "run", env=env
        )
        try:
            await stub.wait_until_polling(timeout=300)
            await give_consent_all(stub, users, timeout=600)
            sent = await _ask_all(stub, users, rate)
            await stub.wait_for(
                "sendMessage", lambda c: texts.REMINDER in str(c.params.get("text", "")),
                count=len(users), timeout=900,
            )  # fmt: skip
        finally:
            await run.stop()
            await stub.stop()
    acks, answers = _replies(stub, "in the queue"), _replies(stub, texts.REMINDER)
    pushed = stub.pushed_at
    return {
        "rate": rate,
        "questions": len(sent),
        "durable": percentiles(
            [stub.confirmed_at[u] - pushed[u] for u in sent.values() if u in stub.confirmed_at]
        ),
        "ack": percentiles([acks[k] - pushed[u] for k, u in sent.items() if k in acks]),
        "answer": percentiles([answers[k] - pushed[u] for k, u in sent.items() if k in answers]),
        "typing_actions": len(stub.calls_of("sendChatAction")),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, help="a GGUF file (default: a tiny random gemma2 one)")
    parser.add_argument("--rate", type=float, default=200.0, help="questions per second")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--max-tokens", type=int, default=8)
    args = parser.parse_args()
    if args.model is None:
        args.model = write_gemma2_gguf(Path(tempfile.mkdtemp(prefix="model")) / "tiny-gemma2.gguf", TINY)
    print(json.dumps(asyncio.run(measure(args.model, args.rate, args.seconds, args.max_tokens)), indent=2))


if __name__ == "__main__":
    main()
