"""A question: check consent, record it, acknowledge with its place, put it on the queue."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

import structlog
from telegram import Message, Update
from telegram.constants import ChatAction
from telegram.ext import ContextTypes

from bot import resources, texts
from bot.handlers.consent import has_consent
from bot.handlers.start import send_consent_prompt
from bot.identity import current_user, language_of
from bot.resources import Resources
from storage.queue import QuestionMessage
from storage.repository.questions import mark_enqueued, record_question

log = structlog.get_logger("bot.ask")


async def ask(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Queue a consented user's question and acknowledge it at once."""
    message, res = update.effective_message, resources.get(context.bot_data)
    if message is None or update.effective_user is None or not await _acceptable(message, res):
        return
    question = _question(update, message, res)
    ids = {"question_id": question.question_id, "update_id": update.update_id}
    with structlog.contextvars.bound_contextvars(**ids):
        async with res.sessionmaker.begin() as session:
            user = await current_user(session, res, update)
            if not has_consent(user, res):
                await send_consent_prompt(update, context)
                return
            question = question.model_copy(update={"research": user.research_consent})
            await record_question(
                session, question_id=question.question_id, user=user, text=question.text,
                chat_pseudonym=res.pseudonyms.chat(question.chat_id), chat_type=question.chat_type,
                language=question.language, research=question.research,
                received_at=datetime.fromtimestamp(question.received_at, UTC),
            )  # fmt: skip
        # Acknowledge before enqueueing, so the answer can never arrive before the acknowledgement.
        position = await res.queue.waiting() + 1
        await message.reply_text(texts.ACK.format(position=position))
        await res.queue.enqueue(question.model_copy(update={"enqueued_at": time.time()}))
        async with res.sessionmaker.begin() as session:
            await mark_enqueued(session, question.question_id, datetime.now(UTC))
        log.info("question.enqueued", position=position)
        await context.bot.send_chat_action(message.chat.id, ChatAction.TYPING)
        res.typing_chats[message.chat.id] = time.monotonic()


def _question(update: Update, message: Message, res: Resources) -> QuestionMessage:
    """The queue message for this Telegram message (research flag set once consent is read)."""
    assert update.effective_user is not None
    now = time.time()
    return QuestionMessage(
        question_id=uuid.uuid4().hex, chat_id=message.chat.id, message_id=message.message_id,
        user=res.pseudonyms.user(update.effective_user.id), chat_type=message.chat.type,
        language=language_of(update), text=(message.text or "").strip(), received_at=now, enqueued_at=now,
        update_id=update.update_id,
    )  # fmt: skip


async def _acceptable(message: Message, res: Resources) -> bool:
    """Refuse empty and over-long text with a kind reply."""
    text = (message.text or "").strip()
    if not text:
        await message.reply_text(texts.EMPTY)
        return False
    if len(text) > res.settings.max_question_chars:
        limit = res.settings.max_question_chars
        await message.reply_text(texts.TOO_LONG.format(length=len(text), limit=limit))
        return False
    return True
