"""👍 / 👎 under answers; a 👎 asks for an optional one-line reason (kept only with research consent)."""

from __future__ import annotations

import structlog
from telegram import ForceReply, ReplyParameters, Update
from telegram.ext import ApplicationHandlerStop

from bot.telegram import texts
from bot.telegram.cleaning import clean
from bot.telegram.context import BotContext
from bot.telegram.i18n import t
from bot.telegram.identity import user_language
from bot.telegram.keyboards import parse_feedback
from storage.repositories.feedback import asker_of, record_feedback, record_reason

log = structlog.get_logger("bot.feedback")


async def on_feedback(update: Update, context: BotContext) -> None:
    """Store the asker's rating; after a 👎 ask (optionally) what was wrong."""
    query, user, res = update.callback_query, update.effective_user, context.resources
    if query is None or user is None:
        return
    language = user_language(update, res)
    parsed = parse_feedback(query.data)
    async with res.sessionmaker.begin() as session:
        asker = await asker_of(session, parsed[1]) if parsed else None
        if parsed is None or asker is None:
            await query.answer(t(texts.FEEDBACK_STALE, language))
            return
        if asker[0] != res.pseudonyms.user(user.id):
            await query.answer(t(texts.FEEDBACK_NOT_YOURS, language))
            return
        await record_feedback(session, parsed[1], parsed[0])
    log.info("feedback.recorded", rating=parsed[0], question_id=parsed[1])
    await query.answer(t(texts.FEEDBACK_THANKS, language))
    await query.edit_message_reply_markup(None)
    if parsed[0] == "down" and query.message is not None:
        prompt = await context.bot.send_message(
            query.message.chat.id,
            t(texts.FEEDBACK_REASON, language),
            reply_parameters=ReplyParameters(query.message.message_id, allow_sending_without_reply=True),
            reply_markup=ForceReply(selective=True),
        )
        await res.state.remember_prompt(res.pseudonyms.chat(prompt.chat.id), prompt.message_id, parsed[1])


async def reason(update: Update, context: BotContext) -> None:
    """A reply to a reason prompt is the reason (not a question); anything else goes on."""
    message, res = update.effective_message, context.resources
    replied = message.reply_to_message if message is not None else None
    if message is None or replied is None or update.effective_user is None:
        return
    chat = res.pseudonyms.chat(message.chat.id)
    question_id = await res.state.take_prompt(chat, replied.message_id)
    if question_id is None:
        return
    async with res.sessionmaker.begin() as session:
        asker = await asker_of(session, question_id)
        if asker is None or asker[0] != res.pseudonyms.user(update.effective_user.id):
            await res.state.remember_prompt(chat, replied.message_id, question_id)
            return
        stored = await record_reason(session, question_id, clean(message.text or "").text)
    log.info("feedback.reason", stored=stored, question_id=question_id)
    await message.reply_text(t(texts.FEEDBACK_REASON_THANKS, user_language(update, res)))
    raise ApplicationHandlerStop
