"""A question (private text, /ask, or a group mention/reply): parse it, then let the ask flow take it."""

from __future__ import annotations

import time
import uuid

import structlog
from telegram import Message, Update

from bot.flows import ask as asking
from bot.flows import consent, groups
from bot.flows.conversation import attach
from bot.resources import Resources
from bot.telegram import texts
from bot.telegram.context import BotContext
from bot.telegram.handlers.fallback import readable
from bot.telegram.handlers.group import hold_for_consent
from bot.telegram.handlers.start import send_consent_prompt
from bot.telegram.i18n import t
from bot.telegram.identity import pseudonym_of, user_language
from bot.telegram.questions import queue_question, warn_if_danger
from storage.queue import QuestionMessage


async def ask(update: Update, context: BotContext) -> None:
    """A private text message is a question."""
    if update.effective_message is not None:
        await submit(update, context, update.effective_message.text or "")


async def ask_command(update: Update, context: BotContext) -> None:
    """``/ask question`` in a group or a private chat."""
    message = update.effective_message
    if message is None:
        return
    text = (message.text or "").partition(" ")[2]
    if not text.strip():
        res = context.resources
        await message.reply_text(t(texts.ASK_USAGE, user_language(update, res)))
        return
    await submit(update, context, text)


async def addressed(update: Update, context: BotContext) -> None:
    """A group message that mentions the bot or replies to it: the rest of the text is the question."""
    message = update.effective_message
    if message is not None:
        mention = f"@{context.bot.username}"
        text = " ".join(word for word in (message.text or "").split() if word.lower() != mention.lower())
        await submit(update, context, text)


async def submit(update: Update, context: BotContext, text: str) -> None:
    """Danger signs first; then group switch, consent, fairness, and the queue."""
    message, res = update.effective_message, context.resources
    if message is None or update.effective_user is None:
        return
    language = user_language(update, res)
    text = (await readable(update, res, text, language)).strip()
    refusal = asking.refusal_of(text, res.settings.max_question_chars)
    if refusal is not None:
        await _refuse(message, refusal, len(text), res, language)
        return
    question = _question(update, message, res, text, language)
    with structlog.contextvars.bound_contextvars(
        question_id=question.question_id, update_id=update.update_id
    ):
        flag = await warn_if_danger(context.bot, res, question, language)
        if message.chat.type != message.chat.PRIVATE and not await _group_on(message, res, language):
            return
        question = await attach(res, question, _replied_to_bot(message, context))
        if not await consent.consented(res, pseudonym_of(update, res)):
            await _consent_first(update, context, question, language)
            return
        await queue_question(context.bot, res, question, language, urgent=flag is not None)


def _replied_to_bot(message: Message, context: BotContext) -> int | None:
    """The id of the bot's message this one replies to (a follow-up to that answer), if any."""
    replied = message.reply_to_message
    if replied is not None and replied.from_user is not None and replied.from_user.id == context.bot.id:
        return replied.message_id
    return None


async def _group_on(message: Message, res: Resources, language: str) -> bool:
    """Whether an administrator enabled the bot in this group (else say how to)."""
    enabled = await groups.enabled(res, res.pseudonyms.chat(message.chat.id))
    if not enabled:
        await message.reply_text(t(texts.GROUP_DISABLED, language))
    return enabled


async def _consent_first(
    update: Update, context: BotContext, question: QuestionMessage, language: str
) -> None:
    """Private: the consent prompt. Group: hold the question and link to a private consent."""
    if question.chat_type == "private":
        await send_consent_prompt(update, context)
        return
    await hold_for_consent(context, question, language)


def _question(update: Update, message: Message, res: Resources, text: str, language: str) -> QuestionMessage:
    """The queue message for this Telegram message (research flag set when it is recorded)."""
    assert update.effective_user is not None
    now, chat = time.time(), res.pseudonyms.chat(message.chat.id)
    return QuestionMessage(
        question_id=question_id_for(update, message, chat), chat_id=message.chat.id,
        message_id=message.message_id,
        user=res.pseudonyms.user(update.effective_user.id), chat_type=message.chat.type,
        language=language, text=text, received_at=now, enqueued_at=now, update_id=update.update_id,
    )  # fmt: skip


def question_id_for(update: Update, message: Message, chat_pseudonym: str) -> str:
    """The same id each time this update is handled (handled again after a crash: asked once).

    Telegram may start update ids afresh after a week without updates, so the chat (as its pseudonym),
    message and time are in it too.
    """
    when = int(message.date.timestamp())
    key = f"tg-update:{update.update_id}:{chat_pseudonym}:{message.message_id}:{when}"
    return uuid.uuid5(uuid.NAMESPACE_URL, key).hex


async def _refuse(
    message: Message, refusal: asking.Refusal, length: int, res: Resources, language: str
) -> None:
    """Refuse empty and over-long text with a kind reply."""
    if refusal is asking.Refusal.EMPTY:
        await message.reply_text(t(texts.EMPTY, language))
        return
    limit = res.settings.max_question_chars
    await message.reply_text(t(texts.TOO_LONG, language).format(length=length, limit=limit))
