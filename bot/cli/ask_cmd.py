"""``ask "question"``: one question through the same queue and worker, answer printed; no Telegram."""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
import uuid

from bot.process.local_worker import start_worker, stop_worker
from bot.process.private_redis import PrivateRedis, private_redis_dir
from bot.telegram import texts
from bot.telegram.delivery import answer_text, latency_split
from inference.settings import InferenceSettings
from inference.setup import ensure_model
from storage.queue import QuestionMessage, queue_from_settings
from storage.queue.connection import answers_ping, connect
from storage.settings import StorageSettings


def ask(args: argparse.Namespace) -> int:
    """Send the question, start a worker if none is up, print the answer and the timings."""
    storage = StorageSettings()
    private: PrivateRedis | None = None
    if storage.redis_url is not None:
        redis_url = storage.redis_url.get_secret_value()
    else:
        server = PrivateRedis(private_redis_dir(storage))
        if server.socket.exists() and answers_ping(server.url):
            redis_url = server.url  # `run` has it up: use the same queue and worker
        else:
            redis_url, private = server.start(), server
    try:
        return asyncio.run(_ask(args, storage, redis_url))
    finally:
        if private is not None:
            private.stop()


async def _ask(args: argparse.Namespace, storage: StorageSettings, redis_url: str) -> int:
    """The asynchronous part of ``ask``."""
    redis = await connect(redis_url)
    queue = queue_from_settings(redis, storage)
    child: subprocess.Popen[bytes] | None = None
    try:
        await queue.ensure_groups()
        if not await queue.live_workers():
            model = ensure_model(InferenceSettings(), storage.ensure_data_dir())
            child = start_worker(redis_url, str(model))
        answer = await queue.ask(_question(args), args.timeout)
        answer_seen_at = time.time()
    finally:
        if child is not None:
            stop_worker(child)
        await redis.aclose()
    if answer is None:
        print(f"meditron-bot: no answer within {args.timeout:.0f} s", file=sys.stderr)
        return 1
    print(answer_text(answer) if answer.status != "ok" else f"{answer.text.strip()}\n\n{texts.REMINDER}")
    split = latency_split(answer, answer_seen_at)
    print("timings: " + ", ".join(f"{k}={v:.3f}" for k, v in split.items()), file=sys.stderr)
    print(f"tokens: prompt={answer.prompt_tokens} answer={answer.completion_tokens}", file=sys.stderr)
    return 0 if answer.status == "ok" else 1


def _question(args: argparse.Namespace) -> QuestionMessage:
    """The terminal's question, from a one-off user that has no chat."""
    now = time.time()
    return QuestionMessage(
        question_id=uuid.uuid4().hex, chat_id=0, message_id=0, user=f"cli-{uuid.uuid4().hex[:8]}",
        chat_type="cli", language=args.language, text=args.question, received_at=now, enqueued_at=now,
    )  # fmt: skip
