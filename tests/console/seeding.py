"""The console's data set, made by the real bot: PTB against the Bot API stand-in, the real llama.cpp worker.

``produce`` talks to the bot as people would: a research-consenting English user asks in private and
in a French group (enabled by its admin), a user who declined research asks one question (its text is
not kept), and the researcher presses 👎 (with a reason) and 👍 under two answers. The data set is made
once per test session and database kind (``sqlite_template`` / ``postgres_template``) and cloned for
each test that asks for ``seeded``: a copy of the SQLite file, or ``CREATE DATABASE ... TEMPLATE``.
The bot's audit rows are keyed and anchored; each clone gets a copy of the anchor file (same key).
"""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import select, text
from sqlalchemy.engine import make_url

from bot.settings import BotSettings
from bot.telegram import texts
from bot.telegram.i18n import t
from storage.audit_anchor import ANCHOR_FILE_NAME
from storage.db import default_sqlite_url, make_engine
from storage.migrate import upgrade_async
from storage.models import Answer, Question, User
from storage.settings import StorageSettings
from tests.console.helpers import Seeded
from tests.support.consent import give_consent
from tests.support.databases import _admin_engine
from tests.support.stack import PSEUDONYM_KEY, Stack, inprocess_worker, polling_bot
from tests.support.telegram_stub import TelegramStub, says

RESEARCHER, PRIVATE, GROUP_ADMIN = 3101, 3102, 3103
GROUP = -100321
FEEDBACK_REASON = "too vague"


def question_text(index: int) -> str:
    """The text of the researcher's question number ``index``."""
    return f"How to treat fever number {index}?"


async def _conversation(stack: Stack, user: int, text: str, **chat: object) -> dict[str, object]:
    """Ask ``text`` (in private, or in the group ``chat``) and wait for the answer; the answer's call."""
    stub, where = stack.stub, int(str(chat.get("chat_id", user)))
    language = str(chat.pop("language_code", "en"))
    before = len(stub.calls)
    if chat:
        stub.push_command("/ask", text, user_id=user, language_code=language, **chat)
    else:
        stub.push_message(text, user_id=user, language_code=language)
    reminder = t(texts.REMINDER, language)
    (answer,) = await stub.wait_for("sendMessage", says(reminder, where), since=before, timeout=60)
    return {"message_id": answer.result["message_id"], "markup": answer.params.get("reply_markup")}


def _question_id(answer: dict[str, object]) -> str:
    """The question id in an answer's feedback buttons."""
    markup = answer["markup"]
    assert isinstance(markup, dict), "the answer has no feedback buttons"
    return str(markup["inline_keyboard"][0][0]["callback_data"].split(":")[2])


async def _feedback(stack: Stack, answers: list[dict[str, object]]) -> None:
    """👎 with a reason under the first answer, 👍 under the second, both with the real buttons."""
    stub = stack.stub
    down, up = answers[0], answers[1]
    before = len(stub.calls)
    stub.push_callback(f"fb:down:{_question_id(down)}", user_id=RESEARCHER, message_id=down["message_id"])
    (prompt,) = await stub.wait_for("sendMessage", says(texts.FEEDBACK_REASON, RESEARCHER), since=before)
    stub.push_message(FEEDBACK_REASON, user_id=RESEARCHER, reply_to_message_id=prompt.result["message_id"])
    await stub.wait_for("sendMessage", says(texts.FEEDBACK_REASON_THANKS, RESEARCHER), since=before)
    stub.push_callback(f"fb:up:{_question_id(up)}", user_id=RESEARCHER, message_id=up["message_id"])
    await stub.wait_for("answerCallbackQuery", lambda call: call.ok, since=before, count=2)


async def _group_question(stack: Stack, index: int) -> None:
    """The group admin enables the bot; the researcher asks question ``index`` there, in French."""
    stub = stack.stub
    group = {"chat_id": GROUP, "chat_type": "supergroup", "title": "Équipe"}
    stub.add_chat(GROUP, chat_type="supergroup", title="Équipe")
    stub.set_chat_member_status(GROUP, GROUP_ADMIN, "administrator")
    before = len(stub.calls)
    stub.push_command("/enable", mention_bot=True, user_id=GROUP_ADMIN, **group)
    await stub.wait_for("sendMessage", says(texts.GROUP_ENABLED, GROUP), since=before)
    await _conversation(stack, RESEARCHER, question_text(index), language_code="fr", **group)


async def _researcher(stack: Stack, user: int, indices: range) -> list[dict[str, object]]:
    """``user`` agrees to research and asks questions ``indices`` in private, one after another."""
    await give_consent(stack.stub, user, "both", language="en")
    return [await _conversation(stack, user, question_text(index)) for index in indices]


async def produce(stack: Stack, research_count: int = 3, askers: int = 1) -> Seeded:
    """Drive the real bot and worker: ``research_count`` research conversations (the newest in the
    French group; the private ones shared by ``askers`` researchers asking side by side), one kept
    without research consent, and feedback by the first researcher on their first two answers."""
    private = research_count - 1
    async with polling_bot(stack, user_messages_per_minute=1_000), inprocess_worker(stack):
        await give_consent(stack.stub, PRIVATE, "service", language="fr")
        users = [RESEARCHER] + [RESEARCHER + 100 + rank for rank in range(1, askers)]
        answers, *_ = await asyncio.gather(
            *(_researcher(stack, user, range(rank, private, askers)) for rank, user in enumerate(users))
        )
        await _group_question(stack, research_count - 1)
        await _conversation(stack, PRIVATE, "secret", language_code="fr")
        if len(answers) >= 2:
            await _feedback(stack, answers)
    return await _read_seeded(stack.db_url)


async def _read_seeded(db_url: str) -> Seeded:
    """The ids of what ``produce`` made, read back from the database (oldest question first)."""
    engine = make_engine(db_url)
    query = (
        select(Question.id, Question.research, User.pseudonym, Answer.text, Answer.model_sha256)
        .join(User, User.id == Question.user_id)
        .join(Answer, Answer.question_id == Question.id)
        .order_by(Question.received_at)
    )
    try:
        async with engine.connect() as connection:
            rows = (await connection.execute(query)).all()
    finally:
        await engine.dispose()
    research = [row for row in rows if row.research]
    (private,) = [row.id for row in rows if not row.research]
    return Seeded(
        research_ids=[row.id for row in research],
        private_id=private,
        pseudonym=str(research[0].pseudonym),
        answers={row.id: str(row.text) for row in research},
        model_sha256=str(research[0].model_sha256),
    )


def make_stack(stub: TelegramStub, redis_url: str, db_url: str, model: Path, data_dir: Path) -> Stack:
    """Settings as the ``stack`` fixture makes them, for a data set built outside a test."""
    storage = StorageSettings(
        data_dir=data_dir, database_url=SecretStr(db_url), redis_url=SecretStr(redis_url),
        pseudonym_key=SecretStr(PSEUDONYM_KEY), queue_namespace=f"tpl{uuid.uuid4().hex}",
        queue_claim_idle_ms=600_000,
    )  # fmt: skip
    settings = BotSettings(
        telegram_bot_token=SecretStr(stub.token), telegram_api_url=stub.base_url,
        typing_interval_s=0.2, poll_timeout_s=5,
    )  # fmt: skip
    return Stack(stub, storage, settings, redis_url, db_url, model)


async def _build(redis_url: str, db_url: str, model: Path, data_dir: Path) -> Seeded:
    """Migrate ``db_url`` and let the real bot fill it."""
    await upgrade_async(db_url)
    stub = TelegramStub()
    await stub.start()
    try:
        return await produce(make_stack(stub, redis_url, db_url, model, data_dir))
    finally:
        await stub.stop()


def _run(redis_url: str, db_url: str, model: Path, data_dir: Path) -> Seeded:
    """``_build`` on a private event loop in a worker thread (session fixtures are synchronous)."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, _build(redis_url, db_url, model, data_dir)).result()


@dataclass(frozen=True)
class Template:
    """A data set made once: where it is and what it holds."""

    url: str
    data_dir: Path
    seeded: Seeded

    def anchor_into(self, data_dir: Path) -> None:
        """Give a clone the bot's audit anchor (the same PSEUDONYM_KEY keys it)."""
        data_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.data_dir / ANCHOR_FILE_NAME, data_dir / ANCHOR_FILE_NAME)


@pytest.fixture(scope="session")
def sqlite_template(
    tmp_path_factory: pytest.TempPathFactory, redis_url: str, tiny_model_path: Path
) -> Template:
    """The data set in a SQLite file, checkpointed so the file alone holds it."""
    data_dir = tmp_path_factory.mktemp("sqlite-template")
    url = default_sqlite_url(data_dir)
    seeded = _run(redis_url, url, tiny_model_path, data_dir)
    with sqlite3.connect(data_dir / "meditron.db") as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return Template(url, data_dir, seeded)


@pytest.fixture(scope="session")
def postgres_template(
    postgres_url: str, tmp_path_factory: pytest.TempPathFactory, redis_url: str, tiny_model_path: Path
) -> Iterator[Template]:
    """The data set in a PostgreSQL database that tests clone (nobody stays connected to it)."""
    name = f"template_{uuid.uuid4().hex}"
    url = make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
    _run_sql(postgres_url, f'CREATE DATABASE "{name}"')
    try:
        data_dir = tmp_path_factory.mktemp("postgres-template")
        yield Template(url, data_dir, _run(redis_url, url, tiny_model_path, data_dir))
    finally:
        _run_sql(postgres_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _run_sql(url: str, statement: str) -> None:
    """Run one AUTOCOMMIT statement (CREATE/DROP DATABASE) on a private event loop."""

    async def run() -> None:
        admin = _admin_engine(url)
        try:
            async with admin.connect() as connection:
                await connection.execute(text(statement))
        finally:
            await admin.dispose()

    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, run()).result()


async def clone(template: Template, db_url: str, postgres_url: str | None) -> None:
    """Make ``db_url`` a copy of ``template``: a file copy, or a database created from it."""
    if postgres_url is None:
        shutil.copyfile(make_url(template.url).database or "", make_url(db_url).database or "")
        return
    name, source = make_url(db_url).database, make_url(template.url).database
    admin = _admin_engine(postgres_url)
    try:
        async with admin.connect() as connection:
            await connection.execute(text(f'DROP DATABASE "{name}"'))
            await connection.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{source}"'))
    finally:
        await admin.dispose()
