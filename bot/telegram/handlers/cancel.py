"""/cancel: withdraw the user's pending question."""

from __future__ import annotations

from telegram import Update

from bot.telegram import texts
from bot.telegram.context import BotContext
from bot.telegram.i18n import t
from bot.telegram.identity import user_language
from storage.repositories.questions import set_question_status


async def cancel(update: Update, context: BotContext) -> None:
    """Take the pending question off the queue; a worker that has it drops the answer."""
    message, res = update.effective_message, context.resources
    if message is None or update.effective_user is None:
        return
    question_id = await res.queue.cancel(res.pseudonyms.user(update.effective_user.id))
    if question_id is None:
        await message.reply_text(t(texts.NOTHING_TO_CANCEL, user_language(update, res)))
        return
    async with res.sessionmaker.begin() as session:
        await set_question_status(session, question_id, "cancelled")
    await res.progress.stop_typing(message.chat.id)
    await message.reply_text(t(texts.CANCELLED, user_language(update, res)))
