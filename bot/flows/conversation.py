"""Which conversation a question continues, and what memory it carries to the worker.

In a private chat every question continues the person's conversation (until /new or the idle
time). In a group, a reply to one of the bot's answers to the same person continues that answer's
conversation; any other group question starts one. Conversations are per person: memory is looked
up under the asker's pseudonym only, so no one ever gets another person's turns.
"""

from __future__ import annotations

from bot.resources import Resources
from storage.queue import QuestionMessage
from storage.queue.conversations import Conversation, new_conversation_id


async def attach(res: Resources, question: QuestionMessage, replied_to: int | None) -> QuestionMessage:
    """``question`` with its conversation id, turn number, earlier turns and their worker set."""
    store = res.conversations
    conversation: Conversation | None
    if question.chat_type == "private":
        conversation = await store.private(question.user)
    elif replied_to is not None:
        conversation = await store.replied(question.user, res.pseudonyms.chat(question.chat_id), replied_to)
    else:
        conversation = None
    conversation = conversation or Conversation(new_conversation_id())
    return question.model_copy(
        update={
            "conversation_id": conversation.id,
            "turn": conversation.next_turn,
            "history": conversation.turns[-res.settings.conversation_turns :]
            if res.settings.conversation_turns
            else (),
            "holder": conversation.worker,
        }
    )


async def remember_question(res: Resources, question: QuestionMessage) -> None:
    """Keep a queued question's text until its answer makes it a turn."""
    if question.conversation_id is not None:
        await res.conversations.asked(
            question.user, question.question_id, question.conversation_id, question.turn, question.text
        )


async def remember_answer(
    res: Resources, user: str, question_id: str, text: str, worker: str = ""
) -> str | None:
    """Add an answer (by ``worker``) to its conversation (before it is sent: a follow-up sent on seeing
    it finds the turn); the conversation id, None when the question's memory is gone (expired, forgotten)."""
    return await res.conversations.answered(user, question_id, text, worker)


async def link_answer(
    res: Resources, user: str, conversation_id: str, chat_id: int, message_ids: list[int]
) -> None:
    """Let a reply by ``user`` to any message of the sent answer continue its conversation."""
    await res.conversations.link(user, conversation_id, res.pseudonyms.chat(chat_id), message_ids)


async def forget_conversations(res: Resources, user: str) -> int:
    """Clear all of a person's conversation memory at once (/new, /forget, /withdraw)."""
    return await res.conversations.clear(user)
