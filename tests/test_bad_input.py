"""Bad input gets a clear, kind reply and loses nothing; answers survive Telegram's refusals."""

from __future__ import annotations

import dataclasses
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.telegram import texts
from bot.telegram.cleaning import clean
from bot.telegram.i18n import t
from storage.models import ConsentEvent, Question, User
from tests.support.consent import give_consent
from tests.support.stack import Stack, inprocess_worker
from tests.support.telegram_stub import says

USER = 5150


async def test_media_messages_are_asked_for_text(stack: Stack, running_bot: Any) -> None:
    kinds = ["photo", "sticker", "document", "location"]  # voice notes: tests/test_voice_e2e.py
    for kind in kinds:
        stack.stub.push_non_text(kind, user_id=USER)
    replies = await stack.stub.wait_for("sendMessage", says(texts.NON_TEXT), count=len(kinds))
    assert len(replies) == len(kinds)


async def test_edited_message_and_unknown_command(stack: Stack, running_bot: Any) -> None:
    stub = stack.stub
    sent = stub.push_message("original question", user_id=USER)
    stub.push_edited_message(sent["message"]["message_id"], "edited question", user_id=USER)
    stub.push_command("/frobnicate", user_id=USER)
    await stub.wait_for("sendMessage", says(texts.EDITED))
    await stub.wait_for("sendMessage", says(texts.UNKNOWN_COMMAND))


async def test_too_long_and_empty_questions_are_refused_kindly(
    stack: Stack, running_bot: Any, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await give_consent(stack.stub, USER, "service")
    long_text = "cough " * 500
    stack.stub.push_message(long_text, user_id=USER)
    reply = (await stack.stub.wait_for("sendMessage", says("characters long")))[0]
    assert str(len(long_text.strip())) in reply.params["text"] and "2000" in reply.params["text"]
    stack.stub.push_message("   ", user_id=USER)
    await stack.stub.wait_for("sendMessage", says(texts.EMPTY))
    async with sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(Question)) == 0


async def test_forged_and_stale_buttons_record_nothing(
    stack: Stack, running_bot: Any, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    stub = stack.stub
    stub.push_command("/start", user_id=USER)
    prompt = (await stub.wait_for("sendMessage", lambda c: bool(c.params.get("reply_markup"))))[-1]
    for data in ("consent:both:en-999", "consent:everything:en-1", "'; DROP TABLE users; --"):
        stub.push_callback(data, user_id=USER, message_id=prompt.result["message_id"])
    answered = await stub.wait_for("answerCallbackQuery", count=3)
    assert all(texts.CONSENT_STALE in str(c.params.get("text")) for c in answered)
    async with sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(ConsentEvent)) == 0


async def test_help_and_privacy(stack: Stack, running_bot: Any) -> None:
    stack.stub.push_command("/help", user_id=USER)
    await stack.stub.wait_for("sendMessage", says("/cancel"))
    stack.stub.push_command("/privacy", user_id=USER)
    reply = (await stack.stub.wait_for("sendMessage", says("What is kept")))[0]
    assert texts.CHOICE_NONE in reply.params["text"] and "180 days" in reply.params["text"]


async def test_answer_refused_by_flood_control_and_network_is_retried_not_lost(
    stack: Stack, running_bot: Any
) -> None:
    """429 and a dropped connection on the answer: it stays pending and arrives once."""
    stub = stack.stub
    await give_consent(stack.stub, USER, "service")
    stub.push_message("How to store vaccines without power?", user_id=USER)
    await stub.wait_for("sendMessage", says("in the queue"))
    stub.fail_next("sendMessage", error_code=429, retry_after=1)
    stub.fail_network("sendMessage", times=1)
    async with inprocess_worker(stack):
        await stub.wait_for("sendMessage", lambda c: c.ok and texts.REMINDER in c.params["text"], timeout=60)
    failed = [c for c in stub.calls_of("sendMessage") if not c.ok]
    delivered = [c for c in stub.calls_of("sendMessage") if c.ok and texts.REMINDER in c.params["text"]]
    assert len(failed) >= 1
    assert len(delivered) == 1


async def _answered_after_notice(stack: Stack, question: str, notice: str) -> None:
    """Send ``question``: the notice, the acknowledgement and the real worker's answer arrive; no error."""
    stub = stack.stub
    before = len(stub.calls)
    stub.push_message(question, user_id=USER)
    await stub.wait_for("sendMessage", says(notice), since=before)
    await stub.wait_for("sendMessage", says("in the queue"), since=before)
    # A claim timeout longer than a loaded machine's generation: the worker's own other slots must not
    # take the question over (the stack's 1 s is for crash tests) and dead-letter it.
    patient = dataclasses.replace(
        stack, storage=stack.storage.model_copy(update={"queue_claim_idle_ms": 60_000})
    )
    async with inprocess_worker(patient):
        await stub.wait_for("sendMessage", says(texts.REMINDER), since=before, timeout=60)
    assert not [c for c in stub.calls[before:] if texts.TEMPORARY_ERROR in str(c.params.get("text", ""))]


async def test_lone_surrogate_is_left_out_kindly_and_the_question_answered(
    stack: Stack, running_bot: Any, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """Half an emoji (a lone UTF-16 surrogate, as a broken client sends it): told, removed, answered, kept."""
    await give_consent(stack.stub, USER)
    await _answered_after_notice(
        stack, "Fever\ud83d and cough in a child of 3?", texts.INPUT_BROKEN_CHARACTER
    )
    async with sessionmaker() as session:
        assert (
            await session.execute(select(Question.text))
        ).scalar_one() == "Fever and cough in a child of 3?"


async def test_nul_character_is_left_out_kindly_and_the_question_answered(
    stack: Stack, running_bot: Any, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """A NUL in a question (PostgreSQL refuses it in text): told, removed, answered, kept."""
    await give_consent(stack.stub, USER)
    await _answered_after_notice(stack, "Dose of zinc\x00 for a child of 2?", texts.INPUT_NUL_CHARACTER)
    async with sessionmaker() as session:
        assert (await session.execute(select(Question.text))).scalar_one() == "Dose of zinc for a child of 2?"


async def test_button_without_a_message_gets_a_kind_answer_and_changes_nothing(
    stack: Stack, running_bot: Any, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """Inline mode: a callback with ``inline_message_id`` and no message is answered in the user's
    language, with where buttons work; nothing is recorded and nothing fails."""
    stub = stack.stub
    for data in ("consent:both:en-1", "lang:es", "fb:up:" + "0" * 32):
        stub.push_callback(data, user_id=USER, language_code="fr", inline=True)
    answered = await stub.wait_for("answerCallbackQuery", count=3)
    kind = t(texts.BUTTON_NEEDS_CHAT, "fr")
    assert kind != texts.BUTTON_NEEDS_CHAT
    assert [(c.ok, c.params.get("text"), c.params.get("show_alert")) for c in answered] == [
        (True, kind, True)
    ] * 3
    stub.push_command("/help", user_id=USER, language_code="fr")  # updates run in order: the three are done
    await stub.wait_for("sendMessage", says(t(texts.HELP, "fr")[:30]))
    assert [c.method for c in stub.calls if c.method.lower().startswith(("edit", "send"))] == ["sendMessage"]
    async with sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(ConsentEvent)) == 0
        assert await session.scalar(select(func.count()).select_from(User)) == 0


def test_cleaning_removes_only_what_cannot_be_stored() -> None:
    cleaned = clean("fe\ud83dver\x00 \U0001f912 and\u200b cough\n")
    assert (cleaned.text, cleaned.surrogates, cleaned.nuls) == ("fever \U0001f912 and\u200b cough\n", 1, 1)
    assert cleaned.notices == (texts.INPUT_BROKEN_CHARACTER, texts.INPUT_NUL_CHARACTER)
    assert clean("plain question").notices == ()
    cleaned.text.encode("utf-8")  # encodable: hashes, Redis and PostgreSQL take it
