"""``meditron-bot audit verify``, several writer processes, and the start-up configuration audit."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from pydantic import SecretStr
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.audit_start import audit_bot_start
from bot.settings import BotSettings
from storage.models import AuditEvent, User
from storage.repository.audit import verify_chain
from storage.settings import StorageSettings
from storage.startup_audit import audit_startup, settings_snapshot
from tests.test_consent_storage import seed

Sessions = async_sessionmaker[AsyncSession]
WRITER = """
import asyncio, sys
from storage.db import make_engine, make_sessionmaker
from storage.repository.audit import append_audit

async def main(url, name, count):
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    for n in range(count):
        async with sessions.begin() as session:
            await append_audit(session, "test.process", name, {"n": n})
    await engine.dispose()

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""


def _env(tmp_path: Path, url: str) -> dict[str, str]:
    """The environment of a command on this database."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "REDIS_", "DATABASE_"))}
    env.update(DATA_DIR=str(tmp_path / "d"), PSEUDONYM_KEY="p" * 64, DATABASE_URL=url)
    return env


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
    sessionmaker: Sessions, migrated_db_url: str, tmp_path: Path
) -> None:
    """Exit 0 with the row count when whole; after an edit, exit 1 naming that row."""
    await seed(sessionmaker, questions=2)
    async with sessionmaker.begin() as session:
        count = await verify_chain(session)
        target = (
            (await session.execute(select(AuditEvent.id).order_by(AuditEvent.id).offset(3))).scalars().first()
        )
    whole = await _cli(tmp_path, migrated_db_url, "audit", "verify")
    assert whole.returncode == 0, whole.stderr
    assert f"{count} rows" in whole.stdout
    async with sessionmaker.begin() as session:
        await session.execute(text("UPDATE audit_events SET payload = '{}' WHERE id = :i"), {"i": target})
    broken = await _cli(tmp_path, migrated_db_url, "audit", "verify")
    assert broken.returncode == 1
    assert f"row {target}" in broken.stderr and "Traceback" not in broken.stderr


async def test_verify_passes_after_erasure(
    sessionmaker: Sessions, migrated_db_url: str, tmp_path: Path
) -> None:
    """Erasing texts is not tampering: the chain still verifies."""
    from storage.erasure import forget_user

    user_id = await seed(sessionmaker, questions=2)
    async with sessionmaker.begin() as session:
        user = await session.get(User, user_id)
        assert user is not None
        await forget_user(session, user)
    result = await _cli(tmp_path, migrated_db_url, "audit", "verify")
    assert result.returncode == 0, result.stderr


async def test_writer_processes_never_fork_the_chain(sessionmaker: Sessions, migrated_db_url: str) -> None:
    """Three processes appending at once still build one straight chain."""
    processes = [
        await asyncio.create_subprocess_exec(sys.executable, "-c", WRITER, migrated_db_url, f"p{n}", "15")
        for n in range(3)
    ]
    codes = await asyncio.gather(*(p.wait() for p in processes))
    async with sessionmaker.begin() as session:
        count = await verify_chain(session)
        links = list((await session.execute(select(AuditEvent.prev_hash))).scalars())
    assert codes == [0, 0, 0]
    assert count == 45 and len(set(links)) == 45


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
