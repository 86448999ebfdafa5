"""kill -9 of the bot process while it holds updates Telegram already handed over: none is lost.

Real processes: `meditron-bot bot` (killed and started again) and `meditron-bot worker`, on one Redis
and one database; only Telegram is the stand-in.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from typing import Any

from tests.support.consent import give_consent
from tests.support.stack import LoggedProcess, Stack, answers_per_message
from tests.support.waiting import eventually
from tests.test_ingest_faults import MARKER, error_replies

USERS = tuple(740_000 + n for n in range(12))


async def _bot(stack: Stack) -> LoggedProcess:
    """`meditron-bot bot` on the stack, ready."""
    env = stack.worker_env(
        TELEGRAM_BOT_TOKEN=stack.stub.token,
        TELEGRAM_API_URL=stack.stub.base_url,
        QUEUE_CLAIM_IDLE_MS="600000",
        POLL_TIMEOUT_S="5",
    )
    process = await LoggedProcess.start(sys.executable, "-m", "bot.cli", "bot", env=env)
    await process.wait_for_line("bot.ready")
    return process


async def test_bot_killed_with_updates_in_hand_loses_none(
    stack: Stack, worker_process: Callable[..., Any]
) -> None:
    """Twelve questions fetched from Telegram, bot killed (-9) at once, started again: each answered once."""
    stub = stack.stub
    first = await _bot(stack)
    try:
        await stub.wait_until_polling()
        for user in USERS:
            await give_consent(stub, user, "service")
        before = len(stub.calls)
        keys = set()
        for n, user in enumerate(USERS):
            update = stub.push_message(f"{MARKER} question {n}", user_id=user)
            keys.add((user, update["message"]["message_id"]))
        # Telegram has handed the batch over; the bot dies before it has handled all of it.
        await stub.wait_for("getUpdates", lambda c: c.ok and len(c.result) == len(USERS), since=before)
    finally:
        await first.stop(signal.SIGKILL)
    second = await _bot(stack)
    try:
        await worker_process(QUEUE_CLAIM_IDLE_MS="600000", MAX_ANSWER_TOKENS="8")
        await eventually(lambda: _all_answered(stub, keys), timeout=90)
    finally:
        await second.stop()
    counts = answers_per_message(stub)
    assert sorted(counts[k] for k in keys) == [1] * len(USERS)
    assert error_replies(stub) == 0
    # The restarted bot handled updates the killed one had been handed (else this proves nothing).
    assert "question.enqueued" in second.output
    logs = first.output + second.output
    assert MARKER not in logs
    assert not any(str(user) in logs for user in USERS)


async def _all_answered(stub: Any, keys: set[tuple[int, int]]) -> bool:
    return keys <= set(answers_per_message(stub))
