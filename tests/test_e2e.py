"""End to end: the real bot, Redis, database and llama.cpp workers; only Telegram is a stand-in."""

from __future__ import annotations

import signal
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.telegram import texts
from storage.models import Answer, AuditEvent, ConsentEvent, Question
from tests.support.consent import buttons, consent_prompt, give_consent
from tests.support.stack import Stack, inprocess_worker
from tests.support.telegram_stub import Call, says

USER = 424242


async def _consent(stack: Stack, choice: str, user: int = USER) -> None:
    """/start, then press one of the consent buttons (offered in this order); the tap is answered."""
    before = len(stack.stub.calls)
    prompt = await give_consent(stack.stub, user, choice)
    assert [data.split(":")[1] for data in buttons(prompt)] == ["both", "service", "decline"]
    await stack.stub.wait_for("answerCallbackQuery", since=before)


async def _ask(stack: Stack, question: str, user: int = USER) -> tuple[dict[str, Any], Call]:
    """Send a question; return the update and the answer message."""
    stub = stack.stub
    before = len(stub.calls)
    update = stub.push_message(question, user_id=user)
    await stub.wait_for("sendMessage", says("in the queue"), since=before)
    answer = await stub.wait_for("sendMessage", says(texts.REMINDER), since=before, timeout=60)
    return update, answer[0]


async def test_consented_question_is_answered_and_recorded(
    stack: Stack, running_bot: Any, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """/start → consent (research) → question → acknowledgement → answer; text stored."""
    stub = stack.stub
    await _consent(stack, "both")
    async with inprocess_worker(stack):
        update, answer = await _ask(stack, "How much ORS for a 2-year-old with diarrhoea?")
    question_message_id = update["message"]["message_id"]
    assert answer.params["reply_parameters"]["message_id"] == question_message_id
    ack = next(c for c in stub.calls_of("sendMessage") if "in the queue" in c.params["text"])
    assert "number 1" in ack.params["text"]
    assert len([c for c in stub.calls_of("sendMessage") if texts.REMINDER in c.params["text"]]) == 1
    assert await stack_streams_empty(stack)  # the answer is acked once recorded (it is sent before)
    async with sessionmaker() as session:
        q = (await session.execute(select(Question))).scalar_one()
        a = (await session.execute(select(Answer))).scalar_one()
        events = (await session.execute(select(ConsentEvent))).scalars().all()
        model_events = (
            (await session.execute(select(AuditEvent).where(AuditEvent.event == "model.changed")))
            .scalars()
            .all()
        )
    assert len(model_events) == 1 and "0" * 64 in model_events[0].payload  # the worker's model, audited
    assert q.text == "How much ORS for a 2-year-old with diarrhoea?" and q.status == "answered"
    assert a.text and a.text in answer.params["text"] and a.model_sha256 == "0" * 64
    assert a.completion_tokens > 0 and a.sent_at is not None and a.first_token_at is not None
    assert sorted((e.scope, e.new_value) for e in events) == [("research", "granted"), ("service", "granted")]
    assert await stack_streams_empty(stack)


async def test_service_only_user_gets_answer_but_no_text_is_kept(
    stack: Stack, running_bot: Any, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """Without research consent only counts and timings are stored."""
    await _consent(stack, "service")
    async with inprocess_worker(stack):
        await _ask(stack, "Signs of dehydration in adults?")
    assert await stack_streams_empty(stack)  # the answer is acked once recorded (it is sent before)
    async with sessionmaker() as session:
        q = (await session.execute(select(Question))).scalar_one()
        a = (await session.execute(select(Answer))).scalar_one()
        dump = await _database_text(session)
    assert (q.text, q.text_sha256, a.text) == (None, None, None)
    assert q.text_chars == len("Signs of dehydration in adults?") and a.completion_tokens > 0
    assert "dehydration" not in dump and str(USER) not in dump


async def test_unconsented_and_declined_users_get_the_prompt_not_an_answer(
    stack: Stack, running_bot: Any
) -> None:
    """A question before any choice, or after declining, brings the consent prompt back."""
    stub = stack.stub
    async with inprocess_worker(stack):
        before = len(stub.calls)
        stub.push_message("Is this answered?", user_id=77)
        await stub.wait_for("sendMessage", consent_prompt(77), since=before)
        await _consent(stack, "decline", user=77)
        before = len(stub.calls)
        stub.push_message("And now?", user_id=77)
        await stub.wait_for("sendMessage", consent_prompt(77), since=before)
    assert not [c for c in stub.calls_of("sendMessage") if "in the queue" in c.params["text"]]
    assert await stack_streams_empty(stack)


async def test_cancel_withdraws_the_pending_question(
    stack: Stack, running_bot: Any, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """/cancel before a worker takes it: no answer ever comes for it."""
    stub = stack.stub
    await _consent(stack, "both")
    before = len(stub.calls)
    stub.push_message("first question, withdrawn", user_id=USER)
    await stub.wait_for("sendMessage", says("in the queue"), since=before)
    stub.push_command("/cancel", user_id=USER)
    await stub.wait_for("sendMessage", says(texts.CANCELLED), since=before)
    async with inprocess_worker(stack) as worker:
        await _ask(stack, "second question")
    assert worker.answered == 1
    assert len([c for c in stub.calls_of("sendMessage") if texts.REMINDER in c.params["text"]]) == 1
    async with sessionmaker() as session:
        statuses = sorted((await session.execute(select(Question.status))).scalars().all())
    assert statuses == ["answered", "cancelled"]


async def test_killed_worker_question_is_reclaimed_and_answered_once(
    stack: Stack, running_bot: Any, worker_process: Any
) -> None:
    """SIGKILL a worker mid-answer: another reclaims the question; the user gets one answer."""
    stub = stack.stub
    await _consent(stack, "both")
    doomed = await worker_process(MAX_ANSWER_TOKENS="1600", WORKER_NAME="doomed")
    before = len(stub.calls)
    stub.push_message("What are danger signs in a newborn?", user_id=USER)
    await doomed.wait_for_line("question.taken")
    await doomed.stop(signal.SIGKILL)
    rescuer = await worker_process(WORKER_NAME="rescuer")
    await stub.wait_for("sendMessage", says(texts.REMINDER), since=before, timeout=60)
    await rescuer.wait_for_line("answer.published")
    assert await stack_streams_empty(stack)
    answers = [c for c in stub.calls_of("sendMessage") if texts.REMINDER in c.params["text"]]
    assert len(answers) == 1
    assert not any("answer.published" in line for line in doomed.lines)


async def stack_streams_empty(stack: Stack, timeout: float = 10.0) -> bool:
    """Whether Redis holds no question or answer (delivered entries are deleted).

    The bot acks an answer just after sending it, so this watches the streams (bounded) until
    they are empty instead of reading them once.
    """
    import asyncio

    from storage.queue.connection import connect

    redis = await connect(stack.redis_url)
    ns = stack.storage.queue_namespace
    try:
        async with asyncio.timeout(timeout):
            while await redis.xlen(f"{ns}:questions") or await redis.xlen(f"{ns}:answers"):  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        return True
    except TimeoutError:
        return False
    finally:
        await redis.aclose()


async def _database_text(session: AsyncSession) -> str:
    """Every value of every table as one string (to search for what must not be there)."""
    from storage.models import Base

    chunks = []
    for table in Base.metadata.sorted_tables:
        rows = (await session.execute(text(f"SELECT * FROM {table.name}"))).all()  # noqa: S608
        chunks.extend(str(value) for row in rows for value in row)
    return "\n".join(chunks)
