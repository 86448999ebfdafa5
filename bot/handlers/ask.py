"""A question: check consent, record it, put it on the queue, acknowledge with its place."""

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
    received_at, question_id = time.time(), uuid.uuid4().hex
    with structlog.contextvars.bound_contextvars(question_id=question_id, update_id=update.update_id):
        async with res.sessionmaker.begin() as session:
            user = await current_user(session, res, update)
            if not has_consent(user, res):
                await send_consent_prompt(update, context)
                return
            research = user.research_consent
            await record_question(
                session, question_id=question_id, user=user, chat_pseudonym=res.pseudonyms.chat(message.chat.id),
                chat_type=message.chat.type, language=language_of(update), text=message.text or "",
                research=research, received_at=datetime.fromtimestamp(received_at, UTC),
            )  # fmt: skip
        # Acknowledge before enqueueing, so the answer can never arrive before the acknowledgement.
        position = await res.queue.waiting() + 1
        await message.reply_text(texts.ACK.format(position=position))
        await res.queue.enqueue(
            QuestionMessage(
                question_id=question_id, chat_id=message.chat.id, message_id=message.message_id,
                user=res.pseudonyms.user(update.effective_user.id), chat_type=message.chat.type,
                language=language_of(update), text=(message.text or "").strip(), research=research,
                received_at=received_at, enqueued_at=time.time(), update_id=update.update_id,
            )
        )  # fmt: skip
        async with res.sessionmaker.begin() as session:
            await mark_enqueued(session, question_id, datetime.now(UTC))
        log.info("question.enqueued", position=position)
        await context.bot.send_chat_action(message.chat.id, ChatAction.TYPING)
        res.typing_chats[message.chat.id] = time.monotonic()


async def _acceptable(message: Message, res: Resources) -> bool:
    """Refuse empty and over-long text with a kind reply."""
    text = (message.text or "").strip()
    if not text:
        await message.reply_text(texts.EMPTY)
        return False
    if len(text) > res.settings.max_question_chars:
        await message.reply_text(
            texts.TOO_LONG.format(length=len(text), limit=res.settings.max_question_chars)
        )
        return False
    return True
