"""``meditron-bot export``: the consenting users' data set, pseudonymised, audited (who, rows, sha256)."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import stat
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage.erasure import erase_research_text
from storage.models import AuditEvent, User, utcnow
from storage.research_export import audited_export
from tests.test_audit_cli import _cli
from tests.test_consent_storage import PSEUDONYM, seed

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
