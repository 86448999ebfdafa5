"""Conversations end to end: the real bot and worker, Redis, the database, the Bot API stand-in."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from redis.asyncio import Redis
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.telegram import texts
from inference.batch import BatchEngine
from storage.models import Answer, Question
from storage.pseudonym import Pseudonymizer
from tests.support.consent import give_consent
from tests.support.databases import recorded_answers
from tests.support.stack import PSEUDONYM_KEY, Stack, inprocess_worker, polling_bot
from tests.support.telegram_stub import Call, says
from tests.support.waiting import eventually

Sessions = async_sessionmaker[AsyncSession]
ADA, BEN = 2001, 2002
GROUP = -100888
GROUP_CHAT = {"chat_id": GROUP, "chat_type": "supergroup", "title": "Team Goma"}
FIRST = "What is the amoxicillin dose for a 12 kg child with pneumonia, and for how many days?"
FOLLOW_UP = "And if penicillin allergy?"  # shorter than FIRST: a longer prompt can only be the history


def pseudonym(user: int) -> str:
    return Pseudonymizer.from_key(PSEUDONYM_KEY.encode()).user(user)


async def ask(stack: Stack, sessionmaker: Sessions, text: str, user: int, **chat: Any) -> tuple[Answer, Call]:
    """Send ``text`` (private, or in a group with ``chat``); the recorded answer and its message."""
    stub = stack.stub
    before, count = len(stub.calls), len(await recorded_answers(sessionmaker))
    where = chat.get("chat_id", user)
    if chat.pop("command", False):
        stub.push_command("/ask", text, user_id=user, **chat)
    else:
        stub.push_message(text, user_id=user, **chat)
    message = (await stub.wait_for("sendMessage", says(texts.REMINDER, where), since=before, timeout=90))[0]

    async def recorded() -> bool:  # recorded after the memory is updated and the user may ask again
        return len(await recorded_answers(sessionmaker)) > count

    await eventually(recorded)
    return (await recorded_answers(sessionmaker))[-1], message


async def command(stack: Stack, text: str, user: int, reply: str) -> None:
    before = len(stack.stub.calls)
    stack.stub.push_command(text, user_id=user)
    await stack.stub.wait_for("sendMessage", says(reply, user), since=before)


async def memory_keys(stack: Stack, user: int) -> list[str]:
    redis = Redis.from_url(stack.redis_url, decode_responses=True)
    try:
        pattern = f"{stack.storage.queue_namespace}:conv:{pseudonym(user)}:*"
        return [key async for key in redis.scan_iter(match=pattern)]
    finally:
        await redis.aclose()


async def redis_dump(stack: Stack) -> str:
    """Every key and value of this test's namespace, as one text."""
    redis = Redis.from_url(stack.redis_url, decode_responses=True)
    parts: list[str] = []
    try:
        async for key in redis.scan_iter(match=f"{stack.storage.queue_namespace}:*"):
            kind = await redis.type(key)
            if kind == "string":
                parts.append(f"{key}={await redis.get(key)}")
            elif kind == "stream":
                parts.append(f"{key}={await redis.xrange(key)}")
            elif kind == "hash":
                parts.append(f"{key}={await redis.hgetall(key)}")
            elif kind == "list":
                parts.append(f"{key}={await redis.lrange(key, 0, -1)}")
            elif kind in ("set", "zset"):
                parts.append(
                    f"{key}="
                    + str(await redis.zrange(key, 0, -1) if kind == "zset" else await redis.smembers(key))
                )
    finally:
        await redis.aclose()
    return "\n".join(parts)


async def test_a_follow_up_holds_the_earlier_turn_and_new_starts_afresh(
    stack: Stack, sessionmaker: Sessions
) -> None:
    """Private chat: the second question's prompt holds the first turn (more prompt tokens, same
    conversation, turn 2); /new says so and the same first question is again turn 1 of a new one."""
    async with polling_bot(stack):
        await give_consent(stack.stub, ADA)
        async with inprocess_worker(stack):
            first, _ = await ask(stack, sessionmaker, FIRST, ADA)
            follow_up, _ = await ask(stack, sessionmaker, FOLLOW_UP, ADA)
            await command(stack, "/new", ADA, texts.NEW_CONVERSATION)
            assert await memory_keys(stack, ADA) == []  # cleared at once
            again, _ = await ask(stack, sessionmaker, FIRST, ADA)
    assert (first.turn, follow_up.turn, again.turn) == (1, 2, 1)
    assert first.conversation_id and follow_up.conversation_id == first.conversation_id
    assert again.conversation_id not in (None, first.conversation_id)
    assert follow_up.prompt_tokens > first.prompt_tokens  # the question is shorter: the history is in
    assert again.prompt_tokens == first.prompt_tokens and again.text == first.text


async def test_memory_expires_after_the_idle_time(stack: Stack, sessionmaker: Sessions) -> None:
    """Every memory key carries the CONVERSATION_IDLE_MIN TTL; once it passed, a question starts anew."""
    idle_min = 0.25  # 15 s: longer than a loaded machine takes to answer (a question's key must outlive
    # its answer to become a turn), short enough to wait for
    async with polling_bot(stack, conversation_idle_min=idle_min):
        await give_consent(stack.stub, ADA)
        async with inprocess_worker(stack):
            first, _ = await ask(stack, sessionmaker, FIRST, ADA)
            keys = await memory_keys(stack, ADA)
            redis = Redis.from_url(stack.redis_url, decode_responses=True)
            try:
                ttls = [await redis.pttl(key) for key in keys]
            finally:
                await redis.aclose()
            assert keys and all(0 < ttl <= idle_min * 60_000 for ttl in ttls), ttls

            async def expired() -> bool:
                return not await memory_keys(stack, ADA)

            await eventually(expired, timeout=60)
            later, _ = await ask(stack, sessionmaker, FOLLOW_UP, ADA)
    assert later.turn == 1 and later.conversation_id != first.conversation_id


async def test_forget_leaves_no_conversation_text_in_redis(stack: Stack, sessionmaker: Sessions) -> None:
    """The turns are in Redis during the conversation; after /forget no question or answer text is."""
    async with polling_bot(stack):
        await give_consent(stack.stub, ADA)
        async with inprocess_worker(stack):
            first, _ = await ask(stack, sessionmaker, FIRST, ADA)
            follow_up, _ = await ask(stack, sessionmaker, FOLLOW_UP, ADA)
        before = await redis_dump(stack)
        assert FIRST in before and FOLLOW_UP in before  # remembered while the conversation goes on
        await command(stack, "/forget", ADA, "")
        await eventually(lambda: _no_memory(stack))
        after = await redis_dump(stack)
    for text in (FIRST, FOLLOW_UP, first.text or "-", follow_up.text or "-"):
        assert text not in after
    assert f":conv:{pseudonym(ADA)}:" not in after


async def _no_memory(stack: Stack) -> bool:
    return not await memory_keys(stack, ADA)


async def test_withdraw_clears_the_memory(stack: Stack, sessionmaker: Sessions) -> None:
    async with polling_bot(stack):
        await give_consent(stack.stub, ADA)
        async with inprocess_worker(stack):
            await ask(stack, sessionmaker, FIRST, ADA)
        assert await memory_keys(stack, ADA)
        await command(stack, "/withdraw", ADA, "")
        await eventually(lambda: _no_memory(stack))


async def test_group_reply_threads_are_kept_apart_per_person(stack: Stack, sessionmaker: Sessions) -> None:
    """Ben replying to the answer Ada got starts his own conversation; Ada replying continues hers."""
    stub = stack.stub
    stub.set_chat_member_status(GROUP, ADA, "administrator")
    async with polling_bot(stack):
        await give_consent(stack.stub, ADA)
        await give_consent(stack.stub, BEN)
        before = len(stub.calls)
        stub.push_command("/enable", mention_bot=True, user_id=ADA, **GROUP_CHAT)
        await stub.wait_for("sendMessage", says(texts.GROUP_ENABLED, GROUP), since=before)
        async with inprocess_worker(stack):
            ada_first, message = await ask(stack, sessionmaker, FIRST, ADA, command=True, **GROUP_CHAT)
            reply = {**GROUP_CHAT, "reply_to_message_id": message.result["message_id"]}
            ben, _ = await ask(stack, sessionmaker, FOLLOW_UP, BEN, **reply)
            ada, _ = await ask(stack, sessionmaker, FOLLOW_UP, ADA, **reply)
            ada_new, _ = await ask(stack, sessionmaker, FOLLOW_UP, ADA, command=True, **GROUP_CHAT)
    assert (ada_first.turn, ben.turn, ada.turn, ada_new.turn) == (1, 1, 2, 1)
    assert ada.conversation_id == ada_first.conversation_id
    assert len({ada_first.conversation_id, ben.conversation_id, ada_new.conversation_id}) == 3
    assert ben.prompt_tokens == ada_new.prompt_tokens < ada.prompt_tokens  # Ben got none of Ada's context
    async with sessionmaker() as session:
        grouped = await session.scalar(
            select(func.count()).select_from(Question).where(Question.chat_type != "private")
        )
    assert grouped == 4


async def test_a_follow_up_on_a_second_worker_without_the_state_is_answered_the_same(
    stack: Stack, sessionmaker: Sessions, chatty_model_path: Path
) -> None:
    """The follow-up answered where the first turn was (from the KV pool) and by a fresh worker that
    never saw the conversation (recomputed) gives the same greedy answer, on a model whose answers
    depend on the prompt."""
    stack = dataclasses.replace(stack, model_path=chatty_model_path)
    async with polling_bot(stack):
        await give_consent(stack.stub, ADA)
        async with inprocess_worker(stack, name="w-one") as one:
            first, _ = await ask(stack, sessionmaker, FIRST, ADA)
            here, _ = await ask(stack, sessionmaker, FOLLOW_UP, ADA)
            await command(stack, "/new", ADA, texts.NEW_CONVERSATION)
            again, _ = await ask(stack, sessionmaker, FIRST, ADA)
        async with inprocess_worker(stack, name="w-two") as two:
            there, _ = await ask(stack, sessionmaker, FOLLOW_UP, ADA)
    assert isinstance(one.batch, BatchEngine) and isinstance(two.batch, BatchEngine)
    assert one.batch.pool_stats.hits >= 1 and one.batch.pool_stats.tokens_saved > first.completion_tokens
    assert two.batch.pool_stats.hits == 0  # nothing cached there: recomputed
    assert (here.worker, there.worker) == ("w-one", "w-two") and here.turn == there.turn == 2
    assert again.text == first.text and here.prompt_tokens == there.prompt_tokens
    assert there.text == here.text and there.completion_tokens == here.completion_tokens
    assert here.text != first.text  # the model's answer depends on the prompt
