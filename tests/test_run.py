"""``meditron-bot run`` as a user starts it: private Redis, SQLite default, one worker, clean stop."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest

from bot import texts
from tests.support.stack import LoggedProcess
from tests.support.telegram_stub import TelegramStub

USER = 9876543


def _env(stub: TelegramStub, data_dir: Path, model: Path, max_tokens: int) -> dict[str, str]:
    """Only what a newcomer sets: the token, the model file; plus where Telegram is."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TELEGRAM_", "REDIS_", "DATABASE_", "MODEL_"))
    }
    env.pop("PSEUDONYM_KEY", None)
    env.update(
        TELEGRAM_BOT_TOKEN=stub.token, TELEGRAM_API_URL=stub.base_url, DATA_DIR=str(data_dir),
        MODEL_PATH=str(model), MAX_ANSWER_TOKENS=str(max_tokens), N_CTX="2048", POLL_TIMEOUT_S="2",
    )  # fmt: skip
    return env


async def _start(stub: TelegramStub, data_dir: Path, model: Path, max_tokens: int) -> LoggedProcess:
    run = await LoggedProcess.start(
        sys.executable, "-m", "bot.cli", "run", env=_env(stub, data_dir, model, max_tokens)
    )
    await run.wait_for_line("worker.ready")
    await run.wait_for_line("bot.ready")
    return run


@pytest.mark.timeout(240)
async def test_run_answers_and_a_stop_loses_nothing(
    telegram_stub: TelegramStub, tiny_model_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Answer one question; stop (SIGTERM) in the middle of the next; after a restart it is answered."""
    stub, data_dir = telegram_stub, tmp_path_factory.mktemp("run", numbered=True)
    run = await _start(stub, data_dir, tiny_model_path, max_tokens=1600)
    try:
        stub.push_command("/start", user_id=USER)
        prompt = (await stub.wait_for("sendMessage", lambda c: bool(c.params.get("reply_markup"))))[0]
        stub.push_callback(
            "consent:both:en-1", user_id=USER, chat_id=USER, message_id=prompt.result["message_id"]
        )
        await stub.wait_for("editMessageText")
        seen = len(run.lines)
        stub.push_message("Fever and stiff neck in a child: what to do?", user_id=USER)
        await run.wait_for_line("question.taken", since=seen)
    finally:
        assert await run.stop(signal.SIGTERM) == 0, run.output
    first_output = run.output
    assert "question.left_pending" in first_output
    assert not [c for c in stub.calls_of("sendMessage") if texts.REMINDER in c.params["text"]]

    before = len(stub.calls)
    run = await _start(stub, data_dir, tiny_model_path, max_tokens=16)
    try:
        answer = await stub.wait_for(
            "sendMessage", lambda c: texts.REMINDER in c.params["text"], since=before, timeout=60
        )
    finally:
        assert await run.stop(signal.SIGTERM) == 0, run.output
    assert answer[0].params["chat_id"] == USER
    logs = first_output + run.output
    assert "stiff neck" not in logs and str(USER) not in logs and stub.token not in logs
    assert (data_dir / "meditron.db").exists() and (data_dir / "redis" / "appendonly.aof").exists()
    assert oct((data_dir / "pseudonym.key").stat().st_mode & 0o777) == "0o600"
