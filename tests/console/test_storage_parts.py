"""Accounts, the research export, the console key, charts and the ``admin`` command."""

from __future__ import annotations

import csv
import io
import json
import os
import stat
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.console.charts import bar_chart, nice_ceiling
from bot.console.login import attempt_login
from bot.console.secret import ConsoleKeyError, load_or_create_secret
from bot.console.stats import histogram, percentile
from bot.telegram import texts
from bot.telegram.i18n import t
from storage.models import utcnow
from storage.repositories.accounts import (
    MAX_FAILED_LOGINS,
    AccountError,
    add_account,
    disable_account,
    get_account,
    start_login,
    unlock_account,
)
from storage.repositories.export import EXPORT_FIELDS, audited_export, export_rows, write_csv, write_jsonl
from storage.repositories.questions import record_question
from storage.repositories.users import get_or_create_user
from tests.console.helpers import Seeded, audit_rows, sha256
from tests.console.seeding import FEEDBACK_REASON, RESEARCHER, question_text
from tests.support.consent import give_consent
from tests.support.stack import Stack, inprocess_worker, polling_bot
from tests.support.telegram_stub import says


async def test_accounts_refuse_bad_roles_names_short_passwords_and_duplicates(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with sessionmaker.begin() as session:
        await add_account(session, "ok-name", "long-enough-pass", "reviewer")
        for name, password, role in (
            ("x", "long-enough-pass", "reviewer"),
            ("bob", "short", "reviewer"),
            ("bob", "long-enough-pass", "root"),
            ("ok-name", "long-enough-pass", "admin"),
            ("bad name!", "long-enough-pass", "admin"),
        ):
            with pytest.raises(AccountError):
                await add_account(session, name, password, role)


async def test_unknown_and_disabled_names_fail_like_a_wrong_password(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    assert (await attempt_login(sessionmaker, "ghost", "whatever-it-is")).reason == "invalid"
    async with sessionmaker.begin() as session:
        await add_account(session, "eve", "long-enough-pass", "reviewer")
    assert (await attempt_login(sessionmaker, "eve", "long-enough-pass")).ok
    async with sessionmaker.begin() as session:
        await disable_account(session, "eve")
    assert (await attempt_login(sessionmaker, "eve", "long-enough-pass")).reason == "invalid"


async def test_a_lock_expires_and_a_locked_account_is_refused_before_its_password_is_checked(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with sessionmaker.begin() as session:
        await add_account(session, "lou", "long-enough-pass", "reviewer")
    now = utcnow()
    for _ in range(MAX_FAILED_LOGINS):
        await attempt_login(sessionmaker, "lou", "wrong-password!", now)
    async with sessionmaker.begin() as session:
        refused = await start_login(session, "lou", now + timedelta(minutes=14))
    assert refused.account_id is None  # nothing to check the password against
    assert not (await attempt_login(sessionmaker, "lou", "long-enough-pass", now)).ok
    later = now + timedelta(minutes=16)
    assert (await attempt_login(sessionmaker, "lou", "long-enough-pass", later)).ok


@pytest.mark.parametrize("name", ["ghost", "rita\n", "a\x00b", "ري", "x" * 65, ""])
async def test_names_that_cannot_exist_are_refused_without_a_query_error(
    sessionmaker: async_sessionmaker[AsyncSession], name: str
) -> None:
    assert not (await attempt_login(sessionmaker, name, "whatever-it-is")).ok
    async with sessionmaker.begin() as session:
        with pytest.raises(AccountError):
            await unlock_account(session, name, actor="test")


def _window() -> tuple[datetime, datetime]:
    """A window around now (the bot stamped the data set when it made it)."""
    now = utcnow()
    return now - timedelta(days=1), now + timedelta(days=1)


async def test_export_rows_hold_only_research_consenting_users(
    sessionmaker: async_sessionmaker[AsyncSession], seeded: Seeded
) -> None:
    async with sessionmaker() as session:
        rows = await export_rows(session, *_window())
    assert [row["question_id"] for row in rows] == seeded.research_ids
    first = rows[0]
    assert tuple(first) == EXPORT_FIELDS
    assert first["user_pseudonym"] == seeded.pseudonym
    assert first["question_text"] == question_text(0)
    assert first["answer_text"] == seeded.answers[seeded.research_ids[0]]
    assert first["model_sha256"] == seeded.model_sha256
    parts = (first["wait_s"], first["first_token_s"], first["generate_s"])
    assert min(parts) >= 0 and abs(sum(parts) - first["total_s"]) <= 0.002  # the worker's real timings
    assert first["prompt_tokens"] > first["completion_tokens"] > 0 and first["prompt_version"]
    assert first["consent_text_version"] == "en-2"
    turns = [(row["conversation_id"], row["conversation_turn"]) for row in rows]
    assert turns[0][0] == turns[1][0] != turns[2][0] and [turn for _, turn in turns] == [1, 2, 1]


async def test_export_carries_feedback(
    sessionmaker: async_sessionmaker[AsyncSession], seeded: Seeded
) -> None:
    async with sessionmaker() as session:
        rows = await export_rows(session, *_window())
    feedback = [(row["feedback_rating"], row["feedback_reason"]) for row in rows]
    assert feedback == [("down", FEEDBACK_REASON), ("up", None), (None, None)]


async def test_export_leaves_out_withdrawn_users_and_the_time_outside_the_window(
    sessionmaker: async_sessionmaker[AsyncSession], seeded: Seeded, stack: Stack
) -> None:
    later = (utcnow() + timedelta(days=2), utcnow() + timedelta(days=3))
    async with sessionmaker() as session:
        assert len(await export_rows(session, *_window())) == 3
        assert await export_rows(session, *later) == []
    async with polling_bot(stack):  # the researcher withdraws with /withdraw, as a user would
        before = len(stack.stub.calls)
        stack.stub.push_command("/withdraw", user_id=RESEARCHER)
        done = texts.WITHDRAW_DONE.split("{", 1)[0]
        await stack.stub.wait_for("sendMessage", says(done, RESEARCHER), since=before)
    async with sessionmaker() as session:
        assert await export_rows(session, *_window()) == []


async def test_export_records_the_consent_version_in_force_when_asked(
    sessionmaker: async_sessionmaker[AsyncSession], seeded: Seeded, stack: Stack
) -> None:
    async with polling_bot(stack), inprocess_worker(stack):  # consent again, to the French text, then ask
        await give_consent(stack.stub, RESEARCHER, "both", language="fr")
        before = len(stack.stub.calls)
        stack.stub.push_message("later", user_id=RESEARCHER, language_code="fr")
        reminder = t(texts.REMINDER, "fr")
        await stack.stub.wait_for("sendMessage", says(reminder, RESEARCHER), since=before, timeout=60)
    async with sessionmaker() as session:
        rows = await export_rows(session, *_window())
    versions = [(row["question_text"], row["consent_text_version"]) for row in rows]
    assert versions == [(question_text(index), "en-2") for index in range(3)] + [("later", "fr-2")]


async def test_audited_export_returns_the_file_and_audits_it(
    sessionmaker: async_sessionmaker[AsyncSession], seeded: Seeded
) -> None:
    window = _window()
    async with sessionmaker.begin() as session:
        content, count, digest = await audited_export(
            session, actor="cli:alice", since=window[0], until=window[1], fmt="jsonl"
        )
    assert count == 3 and digest == sha256(content)
    assert [json.loads(line)["question_status"] for line in content.decode().splitlines()] == ["answered"] * 3
    (event,) = await audit_rows(sessionmaker, "export.created")
    assert json.loads(event.payload) == {
        "actor": "cli:alice",
        "format": "jsonl",
        "rows": 3,
        "sha256": digest,
        "since": window[0].isoformat(),
        "until": window[1].isoformat(),
    }


def test_csv_and_jsonl_writers_keep_text_intact() -> None:
    row = dict.fromkeys(EXPORT_FIELDS)
    row.update(question_id="q1", question_text='Fièvre, "toux"\net douleur', prompt_tokens=3)
    csv_out, jsonl_out = io.StringIO(), io.StringIO()
    write_csv([row], csv_out)
    write_jsonl([row], jsonl_out)
    (parsed,) = list(csv.DictReader(io.StringIO(csv_out.getvalue())))
    assert parsed["question_text"] == 'Fièvre, "toux"\net douleur' and parsed["answer_text"] == ""
    assert json.loads(jsonl_out.getvalue()) == row


def test_console_key_is_created_once_with_mode_0600(tmp_path: Path) -> None:
    first = load_or_create_secret(tmp_path, None)
    assert stat.S_IMODE((tmp_path / "console.key").stat().st_mode) == 0o600
    assert load_or_create_secret(tmp_path, None) == first and len(first) >= 32
    assert load_or_create_secret(tmp_path, "e" * 40) == "e" * 40


def test_console_key_refuses_short_or_shared_keys(tmp_path: Path) -> None:
    with pytest.raises(ConsoleKeyError, match="at least 32"):
        load_or_create_secret(tmp_path, "short")
    load_or_create_secret(tmp_path, None)
    (tmp_path / "console.key").chmod(0o644)
    with pytest.raises(ConsoleKeyError, match="chmod 600"):
        load_or_create_secret(tmp_path, None)


def test_charts_escape_labels_and_scale_nicely() -> None:
    svg = bar_chart([("<b>", 3.0), ("x", 7.0)], title="T & <t>")
    assert "<b>" not in svg and "&lt;b&gt;" in svg and "T &amp; &lt;t&gt;" in svg
    assert svg.count("<rect") == 2
    assert [nice_ceiling(value) for value in (0, 7, 12, 230)] == [1.0, 10.0, 20.0, 250.0]
    assert "no data yet" in bar_chart([("a", 0.0)], title="empty")


def test_percentiles_and_histogram() -> None:
    values = [float(value) for value in range(1, 101)]
    assert [percentile(values, p) for p in (50, 90, 99)] == [50.0, 90.0, 99.0]
    assert percentile([], 50) is None
    assert [count for _, count in histogram([1.0, 6.0, 200.0])] == [1, 1, 0, 0, 0, 0, 1]


def _cli(args: list[str], env: dict[str, str], stdin: str = "") -> subprocess.CompletedProcess[str]:
    """Run ``meditron-bot`` as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", *args],
        input=stdin,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_admin_add_user_and_disable_user_commands(
    migrated_db_url: str, sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    env = {**os.environ, "DATA_DIR": str(tmp_path), "DATABASE_URL": migrated_db_url}
    env.pop("CONSOLE_SECRET_KEY", None)
    created = _cli(["admin", "add-user", "carla", "--role", "admin"], env, "carla-password-1\n")
    assert created.returncode == 0, created.stderr
    assert "carla-password-1" not in created.stdout + created.stderr
    weak = _cli(["admin", "add-user", "dan"], env, "short\n")
    assert weak.returncode == 2 and "at least 12 characters" in weak.stderr
    assert (await attempt_login(sessionmaker, "carla", "carla-password-1")).ok
    assert _cli(["admin", "disable-user", "carla"], env).returncode == 0
    assert not (await attempt_login(sessionmaker, "carla", "carla-password-1")).ok
    async with sessionmaker.begin() as session:
        assert await get_account(session, "dan") is None
    missing = _cli(["admin", "disable-user", "nobody"], env)
    assert missing.returncode == 2 and "no account called 'nobody'" in missing.stderr


@pytest.mark.parametrize("flag", ["Baby is not breathing", "en:not breathing", "EN:x", "en:" + "x" * 40, ""])
async def test_a_red_flag_is_a_rule_label_never_text(
    sessionmaker: async_sessionmaker[AsyncSession], flag: str
) -> None:
    async with sessionmaker.begin() as session:
        user = await get_or_create_user(session, "3" * 64, "en")
        with pytest.raises(ValueError, match="rule label"):
            await record_question(
                session, question_id="q-flag", user=user, chat_pseudonym="c" * 64, chat_type="private",
                language="en", text="x", research=True, received_at=utcnow(), red_flag=flag,
            )  # fmt: skip
