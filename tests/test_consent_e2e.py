"""Consent end to end through the real bot and the Bot API stand-in: versions, /consent, /withdraw,
/forget, and no raw Telegram id anywhere in the database after a full conversation."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import func, inspect, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.consent_texts import consent_for
from bot.telegram import texts
from bot.telegram.i18n import t
from storage.models import AuditEvent, ConsentEvent, Question, User
from storage.pseudonym import Pseudonymizer
from storage.queue.connection import connect
from storage.repositories.audit import verify_chain
from storage.repositories.erasure import tombstones
from storage.repositories.users import get_or_create_user, get_user
from tests.support.consent import consent_prompt, give_consent, with_buttons
from tests.support.stack import PSEUDONYM_KEY, Stack, inprocess_worker, polling_bot
from tests.support.telegram_stub import Call, says
from tests.test_consent_storage import consent, texts_of
from tests.test_e2e import _ask

Sessions = async_sessionmaker[AsyncSession]
USER = 7_310_045_529  # distinctive: must never appear in the database


def _pseudonym() -> str:
    return Pseudonymizer.from_key(PSEUDONYM_KEY.encode()).user(USER)


async def _command(stack: Stack, command: str, expect: str, language: str = "en") -> str:
    """Send a command; return the text of the reply that contains ``expect``."""
    before = len(stack.stub.calls)
    stack.stub.push_command(command, user_id=USER, language_code=language)
    calls = await stack.stub.wait_for("sendMessage", says(expect), since=before)
    return str(calls[-1].params["text"])


async def test_consent_withdraw_and_forget(stack: Stack, running_bot: Any, sessionmaker: Sessions) -> None:
    """/consent shows the choice; /withdraw erases kept texts; /forget erases the user; chain stays whole."""
    await give_consent(stack.stub, USER, "both")
    async with inprocess_worker(stack):
        await _ask(stack, "Fever and stiff neck in a child?", user=USER)
    shown = await _command(stack, "/consent", "What you agreed to")
    assert "Using the service: yes" in shown and "version en-2" in shown
    withdrawn = await _command(stack, "/withdraw", "Research review withdrawn")
    assert "1 question(s)" in withdrawn
    async with sessionmaker.begin() as session:
        assert set(await texts_of(session)) == {None}
        user = await get_user(session, _pseudonym())
        assert user is not None and not user.research_consent and user.service_consent
    forgotten = await _command(stack, "/forget", "I erased everything about you")
    assert "send /start" in forgotten
    before = len(stack.stub.calls)
    stack.stub.push_message("Still there?", user_id=USER)
    await stack.stub.wait_for("sendMessage", consent_prompt(USER), since=before)
    stack.audit_anchor().attach(sessionmaker)  # the bot's rows are keyed: verify as the bot does
    async with sessionmaker.begin() as session:
        assert await get_user(session, _pseudonym()) is None  # a message without a consent choice: no row
        events = list((await session.execute(select(ConsentEvent.scope, ConsentEvent.new_value))).all())
        assert ("service", "withdrawn") in events and ("research", "withdrawn") in events
        assert {t.reason for t in await tombstones(session)} == {"withdrawal", "forget"}
        assert await verify_chain(session) > 0


async def test_user_of_an_older_text_is_asked_again(
    stack: Stack, running_bot: Any, sessionmaker: Sessions
) -> None:
    """Consent to an older text version does not count: the next message brings the current prompt."""
    async with sessionmaker.begin() as session:
        user = await get_or_create_user(session, _pseudonym(), "en")
        await consent(session, user, "service", "granted", version="en-0")
    before = len(stack.stub.calls)
    stack.stub.push_message("Dose of amoxicillin?", user_id=USER)
    prompt = await stack.stub.wait_for("sendMessage", with_buttons, since=before)
    buttons = prompt[-1].params["reply_markup"]["inline_keyboard"]
    assert buttons[0][0]["callback_data"].endswith(":en-2")
    assert not [c for c in stack.stub.calls[before:] if "in the queue" in str(c.params.get("text", ""))]
    stack.stub.push_callback("consent:service:en-0", user_id=USER)
    await stack.stub.wait_for("answerCallbackQuery", lambda c: c.params.get("text") == texts.CONSENT_STALE)
    async with sessionmaker.begin() as session:
        assert len((await session.execute(select(ConsentEvent))).scalars().all()) == 1


async def test_translated_text_is_recorded_with_its_version_and_hash(
    stack: Stack, running_bot: Any, sessionmaker: Sessions
) -> None:
    """A button under the French text stores fr-2 and the sha256 of exactly that text."""
    stack.stub.push_callback("consent:both:fr-2", user_id=USER, language_code="fr")
    await stack.stub.wait_for("editMessageText")
    french = consent_for("fr", stack.bot.retention_days, stack.bot.reviewers)
    async with sessionmaker.begin() as session:
        rows = list((await session.execute(select(ConsentEvent))).scalars())
    assert {(r.text_version, r.text_sha256) for r in rows} == {("fr-2", french.sha256)}
    assert french.text.startswith("Avant de commencer")


async def test_no_raw_telegram_id_in_any_table(
    stack: Stack, running_bot: Any, sessionmaker: Sessions
) -> None:
    """After a full conversation every column of every table is free of the user's and chat's raw ids."""
    await give_consent(stack.stub, USER, "both")
    async with inprocess_worker(stack):
        await _ask(stack, "Malaria treatment for a pregnant woman?", user=USER)
    await _command(stack, "/privacy", "What is kept")
    await _command(stack, "/consent", "What you agreed to")
    async with sessionmaker.begin() as session:
        dump, tables = await _every_value(session)
        events = set((await session.execute(select(AuditEvent.event))).scalars())
        assert (await session.execute(select(Question.text))).scalar_one() is not None
    assert {"users", "questions", "answers", "consent_events", "audit_events", "erasures"} <= tables
    assert _pseudonym() in dump  # the scan sees the data
    assert str(USER) not in dump
    assert {"consent.changed", "question.received", "answer.sent", "config.changed"} <= events


async def _every_value(session: AsyncSession) -> tuple[str, set[str]]:
    """Every value of every column of every table in the database (found by inspection)."""
    connection = await session.connection()
    tables = await connection.run_sync(lambda c: inspect(c).get_table_names())
    chunks = []
    for table in tables:
        rows = (await session.execute(text(f'SELECT * FROM "{table}"'))).all()  # noqa: S608
        chunks.extend(str(value) for row in rows for value in row)
    return "\n".join(chunks), set(tables)


async def test_switching_research_off_by_button_erases(
    stack: Stack, running_bot: Any, sessionmaker: Sessions
) -> None:
    """Choosing "keep nothing for research" after allowing it records a withdrawal and erases the texts."""
    await give_consent(stack.stub, USER, "both")
    async with inprocess_worker(stack):
        await _ask(stack, "Signs of severe dehydration?", user=USER)
    before = len(stack.stub.calls)
    stack.stub.push_callback("consent:service:en-2", user_id=USER)
    edit = await stack.stub.wait_for("editMessageText", since=before)
    assert "erased the text of 1" in edit[-1].params["text"]
    async with sessionmaker.begin() as session:
        assert set(await texts_of(session)) == {None}
        research = (await session.execute(select(ConsentEvent).where(ConsentEvent.scope == "research")
                                          .order_by(ConsentEvent.id))).scalars().all()  # fmt: skip
    assert [(r.old_value, r.new_value) for r in research] == [(None, "granted"), ("granted", "withdrawn")]


# -- consent buttons in the user's language --------------------------------------------------------


def _labels(call: Call) -> list[str]:
    """The texts of the inline buttons of a sent or edited message."""
    return [row[0]["text"] for row in call.params["reply_markup"]["inline_keyboard"]]


@pytest.mark.parametrize("language", ["fr", "ar"])
async def test_consent_buttons_are_in_the_users_language(
    stack: Stack, running_bot: Any, language: str
) -> None:
    """/start, /consent and a stale button show the three buttons translated (Arabic has no consent
    text of its own yet: the English text comes with Arabic buttons)."""
    stub = stack.stub
    wanted = [t(label, language) for label in (texts.BUTTON_BOTH, texts.BUTTON_SERVICE, texts.BUTTON_DECLINE)]
    assert not {texts.BUTTON_BOTH, texts.BUTTON_SERVICE, texts.BUTTON_DECLINE} & set(wanted)
    stub.push_command("/start", user_id=USER, language_code=language)
    prompt = (await stub.wait_for("sendMessage", with_buttons))[-1]
    assert _labels(prompt) == wanted
    before = len(stub.calls)
    stub.push_command("/consent", user_id=USER, language_code=language)
    assert _labels((await stub.wait_for("sendMessage", with_buttons, since=before))[-1]) == wanted
    stub.push_callback("consent:both:en-999", user_id=USER, language_code=language)
    assert _labels((await stub.wait_for("editMessageText", with_buttons))[-1]) == wanted


# -- no user row without a consent choice ----------------------------------------------------------


async def _users(sessionmaker: Sessions) -> int:
    async with sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(User)) or 0)


@contextlib.asynccontextmanager
async def _redis(stack: Stack) -> AsyncIterator[Any]:
    redis = await connect(stack.redis_url)
    try:
        yield redis
    finally:
        await redis.aclose()


async def _redis_values(stack: Stack) -> dict[str, str]:
    """Every string key of this test's namespace and its value."""
    async with _redis(stack) as redis:
        keys = [k async for k in redis.scan_iter(match=f"{stack.storage.queue_namespace}:*")]
        return {k: str(await redis.get(k)) for k in keys if await redis.type(k) == "string"}


async def test_no_user_row_before_a_consent_choice_language_waits_in_redis(
    stack: Stack, sessionmaker: Sessions
) -> None:
    """One question, /lang and a language button, /privacy, /consent, /withdraw, never a choice: no row
    in any table names the person. The language survives a restart (Redis, not the process) and moves
    to the user row at the consent choice."""
    stub = stack.stub
    async with polling_bot(stack, user_messages_per_minute=30):
        stub.push_message("Is paracetamol safe in pregnancy?", user_id=USER)
        await stub.wait_for("sendMessage", with_buttons)
        await _command(stack, "/lang es", t(texts.LANG_SET, "es"))
        before = len(stub.calls)
        stub.push_command("/lang", user_id=USER)
        menu = (await stub.wait_for("sendMessage", with_buttons, since=before))[-1]
        stub.push_callback("lang:fr", user_id=USER, message_id=menu.result["message_id"])
        await stub.wait_for("editMessageText", says(t(texts.LANG_SET, "fr")))
        await _command(stack, "/privacy", t(texts.CHOICE_NONE, "fr"))
        await _command(stack, "/consent", t(texts.RIGHTS_NOT_CHOSEN, "fr"))
        await _command(stack, "/withdraw", t(texts.WITHDRAW_NOTHING, "fr"))
    async with sessionmaker() as session:
        dump, tables = await _every_value(session)
    assert "users" in tables and await _users(sessionmaker) == 0
    assert _pseudonym() not in dump
    language_keys = [k for k, v in (await _redis_values(stack)).items() if f":lang:{_pseudonym()}" in k]
    async with _redis(stack) as redis:
        assert [await redis.get(k) for k in language_keys] == ["fr"]
        assert 0 < await redis.ttl(language_keys[0]) <= 86_400  # it expires on its own within a day
    async with polling_bot(
        stack, user_messages_per_minute=30
    ):  # a new process: the language comes from Redis
        await _command(stack, "/help", t(texts.HELP, "fr")[:40])
        before = len(stub.calls)
        stub.push_command("/start", user_id=USER)
        prompt = (await stub.wait_for("sendMessage", with_buttons, since=before))[-1]
        stub.push_callback("consent:service:fr-2", user_id=USER, message_id=prompt.result["message_id"])
        await stub.wait_for("editMessageText", says(t(texts.CONSENT_SERVICE_DONE, "fr")), since=before)
    async with sessionmaker() as session:
        user = await get_user(session, _pseudonym())
    assert user is not None and user.language == "fr" and user.service_consent
    assert not [k for k in await _redis_values(stack) if ":lang:" in k]  # moved, not copied


# -- a group question held for consent is erased by /forget and /withdraw --------------------------

GROUP = -100_246_813
ADMIN = 4242


@pytest.mark.parametrize("command", ["/forget", "/withdraw"])
async def test_held_group_question_is_erased_by_forget_and_withdraw(
    stack: Stack, running_bot: Any, sessionmaker: Sessions, command: str
) -> None:
    """A question held in a group for its asker's consent leaves Redis at /forget or /withdraw, the
    asker is told, and a consent given afterwards releases nothing."""
    stub = stack.stub
    group = {"chat_id": GROUP, "chat_type": "supergroup", "title": "Team"}
    stub.set_chat_member_status(GROUP, ADMIN, "administrator")
    stub.push_command("/enable", user_id=ADMIN, **group)
    await stub.wait_for("sendMessage", says(texts.GROUP_ENABLED))
    marker = "zinc-dose-held-7341"
    stub.push_command("/ask", f"{marker} for a child of 2?", user_id=USER, **group)
    await stub.wait_for("sendMessage", says("?start=consent"))
    assert [k for k, v in (await _redis_values(stack)).items() if marker in v]  # held, in Redis
    await _command(stack, command, texts.HELD_QUESTION_ERASED)
    assert not [k for k, v in (await _redis_values(stack)).items() if marker in v]
    await give_consent(stack.stub, USER, "both")
    await _command(stack, "/help", "/cancel")  # one user's updates run in order: the button is done
    assert not [c for c in stub.calls if texts.GROUP_QUESTION_RELEASED in str(c.params.get("text", ""))]
    assert not [c for c in stub.calls if "in the queue" in str(c.params.get("text", ""))]
    async with sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(Question)) == 0
