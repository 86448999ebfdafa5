"""👍 / 👎 under answers; a 👎 asks for an optional one-line reason (kept only with research consent)."""

from __future__ import annotations

from telegram import ForceReply, ReplyParameters, Update
from telegram.ext import ApplicationHandlerStop

from bot.flows import feedback
from bot.telegram import texts
from bot.telegram.cleaning import clean
from bot.telegram.context import BotContext
from bot.telegram.i18n import t
from bot.telegram.identity import user_language
from bot.telegram.keyboards import parse_feedback

_REFUSED = {feedback.Rated.STALE: texts.FEEDBACK_STALE, feedback.Rated.NOT_YOURS: texts.FEEDBACK_NOT_YOURS}


async def on_feedback(update: Update, context: BotContext) -> None:
    """Store the asker's rating; after a 👎 ask (optionally) what was wrong."""
    query, user, res = update.callback_query, update.effective_user, context.resources
    if query is None or user is None:
        return
    language = user_language(update, res)
    parsed = parse_feedback(query.data)
    if parsed is None:
        await query.answer(t(texts.FEEDBACK_STALE, language))
        return
    rating, question_id = parsed
    rated = await feedback.rate(res, res.pseudonyms.user(user.id), question_id, rating)
    if rated in _REFUSED:
        await query.answer(t(_REFUSED[rated], language))
        return
    await query.answer(t(texts.FEEDBACK_THANKS, language))
    await query.edit_message_reply_markup(None)
    if rating == "down" and query.message is not None:
        prompt = await context.bot.send_message(
            query.message.chat.id,
            t(texts.FEEDBACK_REASON, language),
            reply_parameters=ReplyParameters(query.message.message_id, allow_sending_without_reply=True),
            reply_markup=ForceReply(selective=True),
        )
        await feedback.prompted(res, res.pseudonyms.chat(prompt.chat.id), prompt.message_id, question_id)


async def reason(update: Update, context: BotContext) -> None:
    """A reply to a reason prompt is the reason (not a question); anything else goes on."""
    message, res = update.effective_message, context.resources
    replied = message.reply_to_message if message is not None else None
    if message is None or replied is None or update.effective_user is None:
        return
    chat, user = res.pseudonyms.chat(message.chat.id), res.pseudonyms.user(update.effective_user.id)
    if not await feedback.reason(res, chat, replied.message_id, user, clean(message.text or "").text):
        return
    await message.reply_text(t(texts.FEEDBACK_REASON_THANKS, user_language(update, res)))
    raise ApplicationHandlerStop
