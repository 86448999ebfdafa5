"""``meditron-bot audit verify`` (chain, keyed hash, anchor), writer processes, and the start-up audit.

Tampering is done as an attacker with database access but without the pseudonym key would do it:
plain SQL, recomputing hashes with the published (unkeyed) formula.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.audit_start import audit_bot_start
from bot.settings import BotSettings
from storage.audit_anchor import ANCHOR_FILE_NAME, AuditAnchor, Checkpoint
from storage.db import make_engine, make_sessionmaker
from storage.errors import AuditAnchorError
from storage.models import AuditEvent, User
from storage.pseudonym import Pseudonymizer
from storage.repositories.audit import GENESIS_HASH, row_hash, verify_audit, verify_chain
from storage.repositories.startup_audit import audit_startup, settings_snapshot
from storage.settings import StorageSettings
from tests.support.consent import give_consent
from tests.support.stack import Stack
from tests.test_consent_storage import seed

Sessions = async_sessionmaker[AsyncSession]
PSEUDONYM_KEY = "p" * 64
WRITER = """
import asyncio, sys
from storage.audit_anchor import AuditAnchor
from storage.db import make_engine, make_sessionmaker
from storage.repositories.audit import append_audit
from storage.settings import StorageSettings

async def main(url, name, count):
    engine = make_engine(url)
    sessions = AuditAnchor.for_storage(StorageSettings()).attach(make_sessionmaker(engine))
    for n in range(count):
        async with sessions.begin() as session:
            await append_audit(session, "test.process", name, {"n": n})
    await engine.dispose()

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""


def _env(tmp_path: Path, url: str) -> dict[str, str]:
    """The environment of a command on this database."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "REDIS_", "DATABASE_"))}
    env.update(DATA_DIR=str(tmp_path / "d"), PSEUDONYM_KEY=PSEUDONYM_KEY, DATABASE_URL=url)
    return env


def cli_anchor(tmp_path: Path) -> AuditAnchor:
    """The anchor the commands of ``_cli`` use (same data directory, same key)."""
    return AuditAnchor.from_pseudonyms(tmp_path / "d", Pseudonymizer.from_key(PSEUDONYM_KEY.encode()))


@pytest.fixture
def anchored(sessionmaker: Sessions, tmp_path: Path) -> Sessions:
    """``sessionmaker`` writing keyed, anchored rows as the bot, console and commands do."""
    return cli_anchor(tmp_path).attach(sessionmaker)


async def _cli(tmp_path: Path, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``meditron-bot ARGS`` in a child process (off the event loop)."""
    command = [sys.executable, "-m", "bot.cli", *args]
    return await asyncio.to_thread(
        subprocess.run,
        command,
        env=_env(tmp_path, url),
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )


async def test_verify_reports_count_then_names_the_changed_row(
    anchored: Sessions, migrated_db_url: str, tmp_path: Path
) -> None:
    """Exit 0 with the row count when whole; after an edit, exit 1 naming that row."""
    await seed(anchored, questions=2)
    async with anchored.begin() as session:
        count = await verify_chain(session)
        target = (
            (await session.execute(select(AuditEvent.id).order_by(AuditEvent.id).offset(3))).scalars().first()
        )
    whole = await _cli(tmp_path, migrated_db_url, "audit", "verify")
    assert whole.returncode == 0, whole.stderr
    assert f"{count} rows ({count} keyed" in whole.stdout and "anchored: row" in whole.stdout
    async with anchored.begin() as session:
        await session.execute(text("UPDATE audit_events SET payload = '{}' WHERE id = :i"), {"i": target})
    broken = await _cli(tmp_path, migrated_db_url, "audit", "verify")
    assert broken.returncode == 1
    assert f"row {target}" in broken.stderr and "Traceback" not in broken.stderr


async def test_verify_passes_after_erasure(anchored: Sessions, migrated_db_url: str, tmp_path: Path) -> None:
    """Erasing texts is not tampering: the chain still verifies."""
    from storage.repositories.erasure import forget_user

    user_id = await seed(anchored, questions=2)
    async with anchored.begin() as session:
        user = await session.get(User, user_id)
        assert user is not None
        await forget_user(session, user)
    result = await _cli(tmp_path, migrated_db_url, "audit", "verify")
    assert result.returncode == 0, result.stderr


async def test_writer_processes_never_fork_the_chain_nor_move_the_anchor_back(
    anchored: Sessions, migrated_db_url: str, tmp_path: Path
) -> None:
    """Three processes appending at once build one straight chain; the anchor ends at the newest row."""
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", WRITER, migrated_db_url, f"p{n}", "15", env=_env(tmp_path, migrated_db_url)
        )
        for n in range(3)
    ]
    codes = await asyncio.gather(*(p.wait() for p in processes))
    async with anchored.begin() as session:
        count = await verify_chain(session)
        links = list((await session.execute(select(AuditEvent.prev_hash))).scalars())
        newest = (await session.execute(select(AuditEvent).order_by(AuditEvent.id.desc()))).scalars().first()
    assert codes == [0, 0, 0]
    assert count == 45 and len(set(links)) == 45
    checkpoint = cli_anchor(tmp_path).read()
    assert newest is not None and checkpoint is not None
    assert (checkpoint.row_id, checkpoint.head_hash) == (newest.id, newest.hash)


async def test_startup_audit_records_only_changes(sessionmaker: Sessions) -> None:
    """First start and changed settings or model are audited; an unchanged restart is not; secrets hidden."""
    bot = BotSettings(telegram_bot_token=SecretStr("123:secret-token"), admin_chat_id=987654321)
    storage = StorageSettings(pseudonym_key=SecretStr("k" * 64), data_dir=Path("data"))
    first = await audit_bot_start(sessionmaker, bot, storage)
    again = await audit_bot_start(sessionmaker, bot, storage)
    changed = await audit_bot_start(sessionmaker, bot.model_copy(update={"retention_days": 30}), storage)
    async with sessionmaker.begin() as session:
        model = await audit_startup(
            session, "worker", {"n_threads": 2}, model_sha256="a" * 64, prompt_version="1"
        )
        same = await audit_startup(
            session, "worker", {"n_threads": 2}, model_sha256="a" * 64, prompt_version="1"
        )
        new = await audit_startup(
            session, "worker", {"n_threads": 2}, model_sha256="b" * 64, prompt_version="1"
        )
        payloads = list((await session.execute(select(AuditEvent.payload))).scalars())
        assert await verify_chain(session) == 5
    assert (first, again, changed) == (["config.changed"], [], ["config.changed"])
    assert (model, same, new) == (["config.changed", "model.changed"], [], ["model.changed"])
    assert '"changed":["retention_days"]' in payloads[1]
    dump = "\n".join(payloads)
    assert "secret-token" not in dump and "987654321" not in dump and "k" * 64 not in dump
    assert settings_snapshot(bot)["telegram_bot_token"] == "<set>"


async def _rows(sessions: Sessions) -> list[AuditEvent]:
    """Every audit row in id order."""
    async with sessions.begin() as session:
        return list((await session.execute(select(AuditEvent).order_by(AuditEvent.id))).scalars())


async def _sql(sessions: Sessions, sql: str, **params: object) -> None:
    """One raw statement in its own transaction (the tamperer's view: no audit append)."""
    async with sessions.begin() as session:
        await session.execute(text(sql), params)


async def _broken(tmp_path: Path, url: str) -> str:
    """``audit verify``'s complaint; fails the test if it exits 0 or with a traceback."""
    result = await _cli(tmp_path, url, "audit", "verify")
    assert result.returncode == 1, result.stdout
    assert "Traceback" not in result.stderr and "BROKEN" in result.stderr
    return result.stderr


async def test_verify_detects_deleted_newest_rows_and_an_emptied_log(
    anchored: Sessions, migrated_db_url: str, tmp_path: Path
) -> None:
    """Deleting the newest rows, then all rows, is named as truncation against the anchor."""
    await seed(anchored, questions=2)
    rows = await _rows(anchored)
    await _sql(anchored, "DELETE FROM audit_events WHERE id > :i", i=rows[-3].id)
    truncated = await _broken(tmp_path, migrated_db_url)
    assert f"log ends at row {rows[-3].id} but the anchor records row {rows[-1].id}" in truncated
    assert "newest rows were deleted" in truncated
    await _sql(anchored, "DELETE FROM audit_events")
    emptied = await _broken(tmp_path, migrated_db_url)
    assert f"the log is empty but the anchor records row {rows[-1].id}: all rows were deleted" in emptied


async def _recompute_from(sessions: Sessions, rows: list[AuditEvent], first: int, payload: str) -> None:
    """Change row ``first``'s payload and recompute every hash from it on with the unkeyed formula."""
    prev = rows[first - 1].hash if first else GENESIS_HASH
    for index, row in enumerate(rows[first:], start=first):
        content = payload if index == first else row.payload
        new = row_hash(prev, row.created_at, row.event, row.subject, content)
        await _sql(
            sessions,
            "UPDATE audit_events SET payload = :p, prev_hash = :ph, hash = :h WHERE id = :i",
            p=content,
            ph=prev,
            h=new,
            i=row.id,
        )
        prev = new


async def test_verify_detects_an_edit_with_every_later_hash_recomputed(
    anchored: Sessions, migrated_db_url: str, tmp_path: Path
) -> None:
    """A recomputed rewrite of keyed rows fails at the edited row: without the key its hash is unkeyed."""
    await seed(anchored, questions=2)
    rows = await _rows(anchored)
    await _recompute_from(anchored, rows, 3, '{"rewritten":true}')
    complaint = await _broken(tmp_path, migrated_db_url)
    assert f"row {rows[3].id}: unkeyed hash after keyed rows" in complaint


async def test_verify_detects_a_recomputed_rewrite_of_pre_key_rows_through_the_anchor(
    sessionmaker: Sessions, anchored_later: Sessions, migrated_db_url: str, tmp_path: Path
) -> None:
    """Pre-key rows rewritten and every later hash recomputed: the anchor catches it."""
    await seed(sessionmaker, "b" * 64, questions=1)  # unkeyed rows, as an older version wrote them
    await seed(anchored_later, questions=1)
    rows = await _rows(sessionmaker)
    whole = await _cli(tmp_path, migrated_db_url, "audit", "verify")
    assert whole.returncode == 0, whole.stderr
    plain = sum(1 for row in rows if row.hash == row_hash(row.prev_hash, row.created_at, row.event,
                                                           row.subject, row.payload))  # fmt: skip
    assert f"unkeyed: the {plain} oldest rows" in whole.stdout and 0 < plain < len(rows)
    await _recompute_from(sessionmaker, rows, 1, '{"rewritten":true}')
    complaint = await _broken(tmp_path, migrated_db_url)
    assert f"at row {rows[-1].id}: the row differs from the anchored one" in complaint


@pytest.fixture
async def anchored_later(migrated_db_url: str, tmp_path: Path) -> AsyncIterator[Sessions]:
    """A second, anchored sessionmaker on the same database (the upgraded version's processes)."""
    engine = make_engine(migrated_db_url)
    try:
        yield cli_anchor(tmp_path).attach(make_sessionmaker(engine))
    finally:
        await engine.dispose()


async def test_verify_detects_a_deleted_or_edited_anchor_file(
    anchored: Sessions, migrated_db_url: str, tmp_path: Path
) -> None:
    """No anchor file while rows exist, or an anchor edited to hide deletions: exit 1 naming the file."""
    await seed(anchored, questions=1)
    rows = await _rows(anchored)
    path = tmp_path / "d" / ANCHOR_FILE_NAME
    saved = path.read_text(encoding="ascii")
    data = json.loads(saved)
    data.update(row_id=rows[1].id, head_hash=rows[1].hash)  # pretend the log ended earlier
    path.write_text(json.dumps(data), encoding="ascii")
    assert "has a wrong signature" in await _broken(tmp_path, migrated_db_url)
    path.unlink()
    missing = await _broken(tmp_path, migrated_db_url)
    assert f"no anchor file {path} although the log has {len(rows)} rows" in missing
    path.write_text(saved, encoding="ascii")
    assert (await _cli(tmp_path, migrated_db_url, "audit", "verify")).returncode == 0


async def test_not_detected_rows_deleted_together_with_an_older_copy_of_the_anchor(
    anchored: Sessions, migrated_db_url: str, tmp_path: Path
) -> None:
    """The documented limit: deleting the newest rows AND putting back an older anchor goes unseen."""
    await seed(anchored, questions=1)
    path = tmp_path / "d" / ANCHOR_FILE_NAME
    older = path.read_text(encoding="ascii")
    anchored_id = json.loads(older)["row_id"]
    await seed(anchored, "b" * 64, questions=1)
    await _sql(anchored, "DELETE FROM audit_events WHERE id > :i", i=anchored_id)
    assert "newest rows were deleted" in await _broken(tmp_path, migrated_db_url)
    path.write_text(older, encoding="ascii")  # the rewind
    result = await _cli(tmp_path, migrated_db_url, "audit", "verify")
    assert result.returncode == 0, result.stderr


async def test_export_command_keys_and_anchors_its_audit_row(
    anchored: Sessions, migrated_db_url: str, tmp_path: Path
) -> None:
    """A command's own audit row (export.created) is keyed and moves the anchor to it."""
    await seed(anchored, questions=1)
    result = await _cli(tmp_path, migrated_db_url, "export", "--since", "2000-01-01", "--until", "2100-01-01")
    assert result.returncode == 0, result.stderr
    newest = (await _rows(anchored))[-1]
    checkpoint = cli_anchor(tmp_path).read()
    assert newest.event == "export.created" and checkpoint is not None
    assert (checkpoint.row_id, checkpoint.head_hash) == (newest.id, newest.hash)
    keyed = row_hash(newest.prev_hash, newest.created_at, newest.event, newest.subject, newest.payload,
                     cli_anchor(tmp_path).chain_key)  # fmt: skip
    assert newest.hash == keyed


async def test_the_running_bot_keys_and_anchors_what_it_audits(
    stack: Stack, running_bot: Any, sessionmaker: Sessions
) -> None:
    """Consent given through the real bot: keyed rows, the anchor at the newest; then truncation shows."""
    anchor = stack.audit_anchor()
    await give_consent(stack.stub, 7_310_045_530, "both")
    rows = await _rows(sessionmaker)
    consent_rows = [row for row in rows if row.event.startswith("consent")]
    assert consent_rows and anchor.read() == Checkpoint(rows[-1].id, rows[-1].hash)
    checking = anchor.attach(make_sessionmaker(sessionmaker.kw["bind"]))
    async with checking.begin() as session:
        report = await verify_audit(session)
    assert report.keyed_rows == report.rows == report.anchored_rows == len(rows)
    await _sql(sessionmaker, "DELETE FROM audit_events WHERE id = :i", i=rows[-1].id)
    with pytest.raises(AuditAnchorError, match="newest rows were deleted"):
        async with checking.begin() as session:
            await verify_audit(session)
