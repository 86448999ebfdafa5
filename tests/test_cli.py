"""The command line as a newcomer meets it: clear one-line errors (exit 2), ask, model, db."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SECRET = "s3cr3t-pw"


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """A clean environment: nothing of ours set except what the test gives."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TELEGRAM_", "REDIS_", "DATABASE_", "MODEL_"))
    }
    env.update(DATA_DIR=str(tmp_path / "d"), PSEUDONYM_KEY="p" * 64, **extra)
    return env


def _cli(tmp_path: Path, *args: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", *args],
        env=_env(tmp_path, **env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _one_clear_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("meditron-bot: error:")]
    assert len(errors) == 1, result.stderr
    return errors[0]


def test_run_without_token_says_what_to_set(tmp_path: Path) -> None:
    line = _one_clear_line(_cli(tmp_path, "run"))
    assert "TELEGRAM_BOT_TOKEN is not set" in line


def test_corrupt_model_file_is_named(tmp_path: Path, garbage_model_path: Path) -> None:
    line = _one_clear_line(
        _cli(tmp_path, "run", TELEGRAM_BOT_TOKEN="1:x", MODEL_PATH=str(garbage_model_path))
    )
    assert str(garbage_model_path) in line


def test_missing_model_path_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope.gguf"
    line = _one_clear_line(_cli(tmp_path, "run", TELEGRAM_BOT_TOKEN="1:x", MODEL_PATH=str(missing)))
    assert str(missing) in line and "MODEL_PATH" in line


def test_unreachable_database_hides_the_password(tmp_path: Path, tiny_model_path: Path) -> None:
    result = _cli(
        tmp_path, "run", TELEGRAM_BOT_TOKEN="1:x", MODEL_PATH=str(tiny_model_path),
        DATABASE_URL=f"postgresql://meditron:{SECRET}@127.0.0.1:9/meditron",
    )  # fmt: skip
    line = _one_clear_line(result)
    assert "cannot reach the database" in line
    assert SECRET not in result.stderr + result.stdout


def test_unreachable_redis_for_a_worker(tmp_path: Path, tiny_model_path: Path) -> None:
    result = _cli(
        tmp_path, "worker", MODEL_PATH=str(tiny_model_path), REDIS_URL=f"redis://:{SECRET}@127.0.0.1:9/0"
    )
    line = _one_clear_line(result)
    assert "cannot reach Redis" in line
    assert SECRET not in result.stderr + result.stdout


def test_bot_without_redis_url_says_so(tmp_path: Path) -> None:
    line = _one_clear_line(_cli(tmp_path, "bot", TELEGRAM_BOT_TOKEN="1:x"))
    assert "REDIS_URL" in line


def test_model_pull_without_network_says_where_to_put_the_file(tmp_path: Path) -> None:
    result = _cli(tmp_path, "model", "pull", HF_ENDPOINT="http://127.0.0.1:9")
    assert "cannot connect" in _one_clear_line(result)
    dest = tmp_path / "d" / "models" / "Meditron3-Gemma2-2B.Q4_K_M.gguf"
    assert "could not be downloaded" in result.stderr
    assert str(dest) in result.stderr and "MODEL_PATH" in result.stderr


def test_model_info_and_verify(tmp_path: Path, tiny_model_path: Path) -> None:
    info = _cli(tmp_path, "model", "info", str(tiny_model_path))
    assert info.returncode == 0, info.stderr
    assert "gemma2" in info.stdout
    verify = _cli(tmp_path, "model", "verify", str(tiny_model_path))
    assert verify.returncode == 0 and "sha256" in verify.stdout


def test_db_upgrade_creates_the_default_sqlite_file(tmp_path: Path) -> None:
    result = _cli(tmp_path, "db", "upgrade")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "d" / "meditron.db").stat().st_size > 0


@pytest.mark.timeout(180)
def test_ask_answers_through_a_private_redis_and_a_worker(tmp_path: Path, tiny_model_path: Path) -> None:
    """The newcomer's first try: no Redis, no Telegram, just the model file."""
    result = _cli(
        tmp_path, "ask", "What is the first-line treatment of uncomplicated malaria?",
        MODEL_PATH=str(tiny_model_path), MAX_ANSWER_TOKENS="16", N_CTX="2048", timeout=170,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Research tool, not validated for medical use" in result.stdout
    assert "first_token_s=" in result.stderr and "tokens: prompt=" in result.stderr
    assert "malaria" not in result.stderr  # the question never reaches a log line


def test_unreachable_bot_api_is_one_line(tmp_path: Path, tiny_model_path: Path) -> None:
    result = _cli(
        tmp_path, "run", TELEGRAM_BOT_TOKEN="1:x", MODEL_PATH=str(tiny_model_path),
        TELEGRAM_API_URL="http://127.0.0.1:9/bot", N_CTX="2048",
    )  # fmt: skip
    line = _one_clear_line(result)
    assert "cannot reach the Telegram Bot API at http://127.0.0.1:9/bot" in line
    assert "1:x" not in result.stderr + result.stdout  # the token never appears


def test_webhook_without_secret_says_what_to_set(tmp_path: Path) -> None:
    url = "https://bot.example.org/telegram"
    line = _one_clear_line(_cli(tmp_path, "bot", "--webhook-url", url, TELEGRAM_BOT_TOKEN="1:x"))
    assert "WEBHOOK_SECRET" in line


def test_webhook_secret_of_wrong_characters_is_refused_without_showing_it(tmp_path: Path) -> None:
    url = "https://bot.example.org/telegram"
    result = _cli(
        tmp_path, "bot", "--webhook-url", url, TELEGRAM_BOT_TOKEN="1:x", WEBHOOK_SECRET="no spaces!"
    )
    line = _one_clear_line(result)
    assert "WEBHOOK_SECRET must be" in line
    assert "no spaces!" not in result.stderr


def test_an_empty_webhook_url_is_refused_not_taken_for_polling(tmp_path: Path) -> None:
    line = _one_clear_line(_cli(tmp_path, "bot", "--webhook-url", "", TELEGRAM_BOT_TOKEN="1:x"))
    assert "--webhook-url must be a URL" in line
