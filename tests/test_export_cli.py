"""``meditron-bot export``: the consenting users' data set, pseudonymised, audited (who, rows, sha256)."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import stat
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage.models import AuditEvent, User, utcnow
from storage.repositories.erasure import erase_research_text
from storage.repositories.export import audited_export
from storage.repositories.feedback import record_feedback, record_reason
from storage.repositories.questions import record_answer, record_question
from storage.repositories.users import get_or_create_user
from tests.test_audit_cli import _cli
from tests.test_consent_storage import PSEUDONYM, consent, seed

Sessions = async_sessionmaker[AsyncSession]


async def _withdrawn_user(sessionmaker: Sessions) -> None:
    """A second user whose research consent was withdrawn (texts erased)."""
    user_id = await seed(sessionmaker, "w" * 64, questions=1)
    async with sessionmaker.begin() as session:
        user = await session.get(User, user_id)
        assert user is not None
        user.research_consent = False
        await erase_research_text(session, user)


async def test_export_writes_the_audited_research_set(
    sessionmaker: Sessions, migrated_db_url: str, tmp_path: Path
) -> None:
    """jsonl to a 0600 file: consenting users' rows only, same content as the console's, audited."""
    await seed(sessionmaker, questions=2)
    await _withdrawn_user(sessionmaker)
    today = f"{utcnow():%Y-%m-%d}"
    out = tmp_path / "set.jsonl"
    args = (
        "export",
        "--since",
        today,
        "--until",
        today,
        "--format",
        "jsonl",
        "--out",
        str(out),
        "--actor",
        "dr-x",
    )
    result = await _cli(tmp_path, migrated_db_url, *args)
    assert result.returncode == 0, result.stderr
    content = out.read_bytes()
    rows = [json.loads(line) for line in content.decode().splitlines()]
    digest = hashlib.sha256(content).hexdigest()
    async with sessionmaker.begin() as session:
        audit = (
            await session.execute(select(AuditEvent).where(AuditEvent.event == "export.created"))
        ).scalar_one()
        same, _, _ = await audited_export(
            session, actor="t", since=_day(today), until=_day(today, 1), fmt="jsonl"
        )
    payload = json.loads(audit.payload)
    assert same == content
    assert {r["user_pseudonym"] for r in rows} == {PSEUDONYM} and len(rows) == 2
    assert {r["model_sha256"] for r in rows} == {"m" * 64} and {r["consent_text_version"] for r in rows} == {
        "en-1"
    }
    assert rows[0]["question_text"] == "question 0 text" and rows[0]["prompt_version"] == "1"
    assert (payload["actor"], payload["rows"], payload["sha256"]) == ("dr-x", 2, digest)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert f"exported 2 rows (jsonl, sha256 {digest})" in result.stderr


async def test_export_csv_to_stdout_and_bad_dates(
    sessionmaker: Sessions, migrated_db_url: str, tmp_path: Path
) -> None:
    """CSV goes to standard output with a header; a bad date is one clear line, exit 2."""
    await seed(sessionmaker, questions=1)
    today = f"{utcnow():%Y-%m-%d}"
    result = await _cli(tmp_path, migrated_db_url, "export", "--since", today, "--until", today)
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert result.returncode == 0 and len(rows) == 1 and rows[0]["answer_text"] == "answer 0 text"
    bad = await _cli(tmp_path, migrated_db_url, "export", "--since", "yesterday", "--until", today)
    assert bad.returncode == 2 and "not a date" in bad.stderr and "Traceback" not in bad.stderr


def _day(day: str, plus: int = 0) -> datetime:
    """Midnight UTC of ``day`` plus ``plus`` days."""
    return datetime.combine(date.fromisoformat(day) + timedelta(days=plus), time(), UTC)


FORMULAS = ('=HYPERLINK("http://x")', "+1+1", "-2+3", "@SUM(A1)", "\tcmd", "\r=1")


async def _formula_questions(sessionmaker: Sessions) -> None:
    """A consenting user whose questions, answers and reasons start like spreadsheet formulas."""
    async with sessionmaker.begin() as session:
        user = await get_or_create_user(session, PSEUDONYM, "en")
        await consent(session, user, "service", "granted")
        await consent(session, user, "research", "granted")
        for number, text in enumerate(FORMULAS):
            qid, now = f"f{number:031d}", utcnow()
            await record_question(session, question_id=qid, user=user, chat_pseudonym="c" * 64,
                                  chat_type="private", language="en", text=text, research=True,
                                  received_at=now)  # fmt: skip
            await record_answer(session, question_id=qid, text=text, status="ok", model_sha256="m" * 64,
                                prompt_version="1", prompt_tokens=1, completion_tokens=1, taken_at=now,
                                first_token_at=now, finished_at=now, sent_at=now, worker="w",
                                stop_reason="eos")  # fmt: skip
            await record_feedback(session, qid, "down")
            await record_reason(session, qid, text)


async def test_csv_export_neutralises_formulas_and_jsonl_keeps_text(
    sessionmaker: Sessions, migrated_db_url: str, tmp_path: Path
) -> None:
    """Cells starting with = + - @ tab CR get a leading quote in CSV; JSON lines carry the text unchanged."""
    await _formula_questions(sessionmaker)
    today, as_csv, as_jsonl = f"{utcnow():%Y-%m-%d}", tmp_path / "set.csv", tmp_path / "set.jsonl"
    for out, fmt in ((as_csv, "csv"), (as_jsonl, "jsonl")):
        args = ("export", "--since", today, "--until", today, "--format", fmt, "--out", str(out))
        result = await _cli(tmp_path, migrated_db_url, *args)
        assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(as_csv.read_bytes().decode(), newline="")))
    lines = [json.loads(line) for line in as_jsonl.read_bytes().decode().split("\n") if line]
    assert len(rows) == len(lines) == len(FORMULAS)
    assert (
        sorted(r["question_text"] for r in lines)
        == sorted(r["answer_text"] for r in lines)
        == sorted(FORMULAS)
    )
    for row, line in zip(rows, lines, strict=True):  # both oldest first
        for name in ("question_text", "answer_text"):
            assert row[name] == "'" + line[name], (name, row[name])
        reason = line["feedback_reason"]  # stored stripped: "\tcmd" is "cmd", "\r=1" is "=1"
        assert row["feedback_reason"] == ("'" + reason if reason[0] in "=+-@" else reason)
        assert row["received_at"] == line["received_at"] and row["wait_s"] == "0.0"  # other cells as they are


def _export_args(today: str, out: Path) -> tuple[str, ...]:
    """``export`` of today's rows as CSV into ``out``."""
    return ("export", "--since", today, "--until", today, "--out", str(out))


async def test_out_ignores_a_file_or_link_planted_at_the_old_temporary_name(
    sessionmaker: Sessions, migrated_db_url: str, tmp_path: Path
) -> None:
    """A planted ``.NAME.tmp`` (file or link) is never opened: the export is ours, 0600, and nowhere else."""
    await seed(sessionmaker, questions=1)
    today, shared = f"{utcnow():%Y-%m-%d}", tmp_path / "shared"
    shared.mkdir()
    for kind in ("file", "link"):
        out, bait = shared / f"{kind}.csv", tmp_path / f"attacker-{kind}"
        bait.write_text("attacker's\n", encoding="utf-8")
        bait.chmod(0o666)
        planted = shared / f".{out.name}.tmp"
        if kind == "link":
            planted.symlink_to(bait)
        else:
            os.link(bait, planted)  # the attacker keeps a second name for the planted file
        result = await _cli(tmp_path, migrated_db_url, *_export_args(today, out))
        assert result.returncode == 0, result.stderr
        assert bait.read_text(encoding="utf-8") == "attacker's\n"
        assert out.stat().st_ino != bait.stat().st_ino and stat.S_IMODE(out.stat().st_mode) == 0o600
        assert "answer 0 text" in out.read_text(encoding="utf-8")
    leftovers = sorted(p.name for p in shared.iterdir())
    assert leftovers == [".file.csv.tmp", ".link.csv.tmp", "file.csv", "link.csv"]


async def test_out_refuses_a_link_and_replaces_a_planted_file(
    sessionmaker: Sessions, migrated_db_url: str, tmp_path: Path
) -> None:
    """A symbolic link at --out: exit 2, nothing written or audited; a planted file there is replaced."""
    await seed(sessionmaker, questions=1)
    today, bait = f"{utcnow():%Y-%m-%d}", tmp_path / "bait"
    bait.write_text("attacker's\n", encoding="utf-8")
    link = tmp_path / "link.csv"
    link.symlink_to(bait)
    refused = await _cli(tmp_path, migrated_db_url, *_export_args(today, link))
    assert refused.returncode == 2 and "symbolic link" in refused.stderr and "Traceback" not in refused.stderr
    assert bait.read_text(encoding="utf-8") == "attacker's\n" and link.is_symlink()
    planted = tmp_path / "planted.csv"
    os.link(bait, planted)
    bait.chmod(0o666)
    result = await _cli(tmp_path, migrated_db_url, *_export_args(today, planted))
    assert result.returncode == 0, result.stderr
    assert bait.read_text(encoding="utf-8") == "attacker's\n" and planted.stat().st_ino != bait.stat().st_ino
    assert stat.S_IMODE(planted.stat().st_mode) == 0o600
    async with sessionmaker.begin() as session:
        exports = (
            await session.execute(select(AuditEvent).where(AuditEvent.event == "export.created"))
        ).all()
    assert len(exports) == 1  # the refused one was not audited
