"""Where the time of one question goes, through the real `meditron-bot run` and the Bot API stand-in.

    python -m tests.latency_split --model PATH [--max-tokens N] [--questions N]

Prints, per question, the seconds from the update's arrival to the answer being sent, split into:
enqueue (update received → enqueued), wait (→ taken by the worker), first_token (→ first token),
generate (→ last token), send (→ sendMessage accepted). A measurement tool, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
from pathlib import Path

from tests.support.consent import give_consent
from tests.support.stack import LoggedProcess
from tests.support.telegram_stub import TelegramStub

USER = 31337
QUESTIONS = (
    "A 3-year-old has had diarrhoea for two days and is drinking eagerly. What should I do?",
    "What are the danger signs of pneumonia in a child under five?",
    "How should I store oxytocin when there is no refrigerator?",
    "When should a pregnant woman with headache and swollen feet be referred?",
)


async def measure(model: Path, max_tokens: int, questions: int) -> list[dict[str, float]]:
    """Run the bot on ``model`` and return the split of each question."""
    stub = TelegramStub()
    await stub.start()
    with tempfile.TemporaryDirectory(prefix="lat") as data:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "DATABASE_"))}
        env.update(
            TELEGRAM_BOT_TOKEN=stub.token, TELEGRAM_API_URL=stub.base_url, DATA_DIR=data,
            MODEL_PATH=str(model), MAX_ANSWER_TOKENS=str(max_tokens), N_CTX="2048",
        )  # fmt: skip
        run = await LoggedProcess.start(sys.executable, "-m", "bot.cli", "run", env=env)
        try:
            await run.wait_for_line("worker.ready", timeout=300)
            await run.wait_for_line("bot.ready")
            await give_consent(stub, USER)
            return [await _one(stub, run, QUESTIONS[i % len(QUESTIONS)]) for i in range(questions)]
        finally:
            await run.stop()
            await stub.stop()


async def _one(stub: TelegramStub, run: LoggedProcess, question: str) -> dict[str, float]:
    """One question; its split from the bot's answer.sent log line."""
    seen = len(run.lines)
    stub.push_message(question, user_id=USER)
    line = await run.wait_for_line('"answer.sent"', timeout=600, since=seen)
    record = json.loads(line)
    keys = ("enqueue_s", "wait_s", "first_token_s", "generate_s", "send_s")
    split = {key: float(record.get(key, 0.0)) for key in keys}
    split["total_s"] = round(sum(split.values()), 4)
    return split


def main() -> None:
    """Parse arguments, measure, print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--questions", type=int, default=3)
    args = parser.parse_args()
    splits = asyncio.run(measure(args.model, args.max_tokens, args.questions))
    print(f"model: {args.model.name}  answer budget: {args.max_tokens} tokens  load: {os.getloadavg()}")
    print("question  " + "  ".join(f"{key:>13}" for key in splits[0]))
    for index, split in enumerate(splits, 1):
        print(f"{index:>8}  " + "  ".join(f"{value:>13.3f}" for value in split.values()))


if __name__ == "__main__":
    main()
