"""Conversation memory in Redis (storage/queue/conversations.py): a bounded number of turns."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from storage.queue.conversations import ConversationStore
from storage.queue.streams import QueueNames


async def _two_turns(store: ConversationStore) -> list[tuple[str, str]]:
    conversation = await store.private("u1")
    for turn, (question, answer) in enumerate([("first?", "one."), ("second?", "two.")], start=1):
        await store.asked("u1", f"q{turn}", conversation.id, turn, question)
        await store.answered("u1", f"q{turn}", answer)
    return [tuple(t) for t in (await store.load("u1", conversation.id)).turns]


@pytest.mark.parametrize(("max_turns", "kept"), [(1, [("second?", "two.")]), (0, [])])
async def test_memory_keeps_at_most_max_turns(
    redis_client: Redis, queue_names: QueueNames, max_turns: int, kept: list[tuple[str, str]]
) -> None:
    """CONVERSATION_TURNS bounds what Redis holds; 0 keeps no text at all (not every turn)."""
    store = ConversationStore(redis_client, queue_names.namespace, idle_s=60, max_turns=max_turns)
    assert await _two_turns(store) == kept
    await store.clear("u1")
