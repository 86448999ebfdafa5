"""DELIVERY=paragraphs: finished paragraphs reach the user early, in order, in at most 3 messages."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.telegram import texts
from bot.telegram.app import build_application
from inference.batch import BatchEngine
from inference.paragraphs import Paragraphs
from inference.prompt import build_prompt
from inference.synthetic import TINY, build_vocab, write_gemma2_gguf
from storage.models import Answer
from storage.queue import queue_from_settings
from storage.queue.connection import connect
from tests.support.consent import give_consent
from tests.support.llama_server import running_llama_server
from tests.support.stack import Stack, running_application
from tests.support.telegram_stub import says
from tests.test_e2e import USER, stack_streams_empty

PARAGRAPHS = ["Wash hands first.", "Give ORS after each stool.", "Watch for danger signs.", "Refer if worse."]
# llama-server samples only this text (a grammar), so the tiny random model writes real paragraphs.
GRAMMAR = "root ::= " + ' "\\n\\n" '.join(f'"{paragraph}"' for paragraph in PARAGRAPHS)


def test_finished_paragraphs_are_found_in_order_at_most_two() -> None:
    """A paragraph is finished once a blank line follows it; leading blank lines are no paragraph."""
    tracker = Paragraphs()
    assert tracker.feed("\n\nFirst") == []
    assert tracker.feed("\n\nFirst para.\n") == []
    assert tracker.feed("\n\nFirst para.\n \nSecond") == [(0, "First para.")]
    assert tracker.feed("\n\nFirst para.\n \nSecond.\n\nThird.\n\nFourth") == [(1, "Second.")]
    text = "\n\nFirst para.\n \nSecond.\n\nThird.\n\nFourth"
    assert tracker.feed(text) == []  # at most two early paragraphs
    assert text[tracker.ends[1] :] == "Third.\n\nFourth"


def test_engine_reports_text_after_each_line_break(tmp_path: Path) -> None:
    """The batched engine calls on_text with the text so far after every token holding a line break."""
    vocab, _, _ = build_vocab(TINY.n_vocab)
    model = write_gemma2_gguf(tmp_path / "breaks.gguf", TINY, favour_token_id=vocab.index("\n\n"))
    seen: list[str] = []
    with BatchEngine(model, n_ctx=1024, n_threads=2, max_sequences=1) as engine:
        result = engine.generate(build_prompt("q"), max_tokens=5, on_text=seen.append)
    assert result.text == "\n\n" * 5
    assert seen == ["\n\n" * n for n in range(1, 6)]


@pytest.fixture(scope="module")
def paragraph_server(
    llama_server_binary: Path, tiny_model_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A llama-server whose answers are the four paragraphs above."""
    log = tmp_path_factory.mktemp("llama-server-paragraphs") / "server.log"
    with running_llama_server(llama_server_binary, tiny_model_path, log, "--grammar", GRAMMAR) as url:
        yield url


@pytest.fixture
async def paragraph_bot(stack: Stack) -> AsyncIterator[Any]:
    """The real bot with DELIVERY=paragraphs."""
    settings = stack.bot.model_copy(update={"delivery": "paragraphs"})
    app = build_application(settings, stack.storage, redis_url=stack.redis_url, database_url=stack.db_url)
    async with running_application(app):
        await stack.stub.wait_until_polling()
        yield app


async def test_paragraphs_arrive_in_order_the_last_with_reminder_and_buttons(
    stack: Stack,
    paragraph_bot: Any,
    worker_process: Any,
    paragraph_server: str,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """Three messages: two finished paragraphs, then the rest with the reminder and 👍/👎; no edits."""
    stub = stack.stub
    await give_consent(stack.stub, USER, "both")
    worker = await worker_process(INFERENCE_URL=paragraph_server, MAX_ANSWER_TOKENS="200")
    before = len(stub.calls)
    update = stub.push_message("Child with diarrhoea?", user_id=424242)
    await stub.wait_for("sendMessage", says(texts.REMINDER), since=before, timeout=60)
    assert await stack_streams_empty(stack)
    await worker.wait_for_line("answer.published")
    answers = [
        call
        for call in stub.calls[before:]
        if call.method == "sendMessage" and "in the queue" not in str(call.params.get("text"))
    ]
    assert [call.params["text"] for call in answers] == [
        PARAGRAPHS[0],
        PARAGRAPHS[1],
        f"{PARAGRAPHS[2]}\n\n{PARAGRAPHS[3]}\n\n{texts.REMINDER}",
    ]
    assert answers[0].params["reply_parameters"]["message_id"] == update["message"]["message_id"]
    assert [bool(call.params.get("reply_parameters")) for call in answers] == [True, False, False]
    assert [bool(call.params.get("reply_markup")) for call in answers] == [False, False, True]
    assert not [call for call in stub.calls[before:] if call.method == "editMessageText"]  # no edit-stream
    assert sum("answer.part_published" in line for line in worker.lines) == 2
    async with sessionmaker() as session:
        record = (await session.execute(select(Answer))).scalar_one()
    assert record.text == "\n\n".join(PARAGRAPHS)  # the whole answer is recorded once


async def test_a_paragraph_sent_before_a_bot_restart_is_not_sent_again(
    stack: Stack, worker_process: Any, paragraph_server: str
) -> None:
    """A bot process dies after sending the first paragraph: the next one sends the rest, once each."""
    stub = stack.stub
    settings = stack.bot.model_copy(update={"delivery": "paragraphs"})

    def bot() -> Any:
        storage, redis_url = stack.storage, stack.redis_url
        return build_application(settings, storage, redis_url=redis_url, database_url=stack.db_url)

    async with running_application(bot()):
        await stub.wait_until_polling()
        await give_consent(stack.stub, USER, "both")
        before = len(stub.calls)
        stub.push_message("Child with diarrhoea?", user_id=424242)
        await stub.wait_for("sendMessage", says("in the queue"), since=before)
    worker = await worker_process(INFERENCE_URL=paragraph_server, MAX_ANSWER_TOKENS="200")
    await worker.wait_for_line("answer.published")  # both paragraphs and the answer wait in Redis
    redis = await connect(stack.redis_url)
    try:
        queue = queue_from_settings(redis, stack.storage)
        entries = await redis.xrange(queue.names.answers)
        question_id = json.loads(entries[0][1]["m"])["question_id"]
        await queue.mark_sent(f"{question_id}#0")  # the dead process had sent the first paragraph
    finally:
        await redis.aclose()
    sent = len(stub.calls)
    async with running_application(bot()):
        await stub.wait_for("sendMessage", says(texts.REMINDER), since=sent, timeout=60)
        assert await stack_streams_empty(stack)
    answers = [call.params["text"] for call in stub.calls[sent:] if call.method == "sendMessage"]
    assert answers == [PARAGRAPHS[1], f"{PARAGRAPHS[2]}\n\n{PARAGRAPHS[3]}\n\n{texts.REMINDER}"]


async def test_a_reply_to_any_paragraph_of_a_group_answer_continues_its_conversation(
    stack: Stack,
    paragraph_bot: Any,
    worker_process: Any,
    paragraph_server: str,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """In a group, Ada's answer comes as three messages: her reply to the first paragraph continues
    that conversation (turn 2), so does her reply to the second (turn 3); Ben replying to the first
    starts his own (turn 1, none of Ada's context)."""
    from tests.test_conversation_e2e import ADA, BEN, FIRST, FOLLOW_UP, GROUP, GROUP_CHAT, ask

    stub = stack.stub
    stub.set_chat_member_status(GROUP, ADA, "administrator")
    await give_consent(stub, ADA)
    await give_consent(stub, BEN)
    before = len(stub.calls)
    stub.push_command("/enable", mention_bot=True, user_id=ADA, **GROUP_CHAT)
    await stub.wait_for("sendMessage", says(texts.GROUP_ENABLED, GROUP), since=before)
    await worker_process(INFERENCE_URL=paragraph_server, MAX_ANSWER_TOKENS="200")
    before = len(stub.calls)
    first, _ = await ask(stack, sessionmaker, FIRST, ADA, command=True, **GROUP_CHAT)
    parts = [
        (await stub.wait_for("sendMessage", says(paragraph, GROUP), since=before))[0].result["message_id"]
        for paragraph in PARAGRAPHS[:2]
    ]
    ben, _ = await ask(stack, sessionmaker, FOLLOW_UP, BEN, **GROUP_CHAT, reply_to_message_id=parts[0])
    ada, _ = await ask(stack, sessionmaker, FOLLOW_UP, ADA, **GROUP_CHAT, reply_to_message_id=parts[0])
    again, _ = await ask(stack, sessionmaker, FOLLOW_UP, ADA, **GROUP_CHAT, reply_to_message_id=parts[1])
    assert (first.turn, ada.turn, again.turn) == (1, 2, 3)
    assert first.conversation_id == ada.conversation_id == again.conversation_id
    assert ben.turn == 1 and ben.conversation_id not in (None, first.conversation_id)
    assert ben.prompt_tokens < ada.prompt_tokens < again.prompt_tokens  # the history is in Ada's only
