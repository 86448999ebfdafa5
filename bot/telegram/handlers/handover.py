""" "Ask a clinician" buttons, /human, the asker's yes/no, and 👍/👎 on a clinician's reply."""

from __future__ import annotations

import structlog
from telegram import ReplyParameters, Update

from bot.flows.handover import Refusal, agreement, decide, handover_offer
from bot.telegram import texts
from bot.telegram.context import BotContext
from bot.telegram.i18n import t
from bot.telegram.identity import pseudonym_of, user_language
from bot.telegram.keyboards import handover_consent_keyboard, parse_case_rating, parse_handover
from storage.models import Case, User
from storage.queue.cases import Offer
from storage.repositories.cases import rate_case

log = structlog.get_logger("bot.handover")


async def _ask_agreement(context: BotContext, offer: Offer, language: str) -> None:
    """The agreement question with yes/no, as a reply to the question it is about."""
    await context.bot.send_message(
        offer.chat_id, agreement(language).text,
        reply_parameters=ReplyParameters(offer.message_id, allow_sending_without_reply=True),
        reply_markup=handover_consent_keyboard(offer.question_id, language),
    )  # fmt: skip


async def human(update: Update, context: BotContext) -> None:
    """``/human``: offer the user's last question to a clinician."""
    message, res = update.effective_message, context.resources
    if message is None or update.effective_user is None:
        return
    language = user_language(update, res)
    user = pseudonym_of(update, res)
    question_id = await res.cases.last_question(user)
    found = await handover_offer(res.sessionmaker, res.cases, question_id, user) if question_id else None
    if isinstance(found, Offer):
        await _ask_agreement(context, found, language)
        return
    reason = found.value if isinstance(found, Refusal) else texts.HANDOVER_NO_QUESTION
    await message.reply_text(t(reason, language))


async def on_button(update: Update, context: BotContext) -> None:
    """ "Ask a clinician" (ask), then the agreement's yes or no."""
    query, res = update.callback_query, context.resources
    parsed = parse_handover(query.data if query else None)
    if query is None or parsed is None or update.effective_user is None:
        return
    action, question_id = parsed
    language = user_language(update, res)
    found = await handover_offer(res.sessionmaker, res.cases, question_id, pseudonym_of(update, res))
    if isinstance(found, Refusal):
        await query.answer(t(found.value, language))
        if action != "ask":
            await query.edit_message_reply_markup(None)
        return
    if action == "ask":
        await query.answer()
        await _ask_agreement(context, found, language)
        return
    agreed = action == "yes"
    case = await decide(
        res.sessionmaker, res.cases, res.conversations, found, agreed=agreed, language=language
    )
    log.info("handover.decided", agreed=agreed, opened=case is not None, question_id=question_id)
    minutes = max(1, round(res.settings.handover_alert_min))  # never "within 0 minutes"
    text = t(texts.HANDOVER_OPENED, language).format(minutes=minutes) if case else None
    await query.answer()
    await query.edit_message_text(text or t(texts.HANDOVER_DECLINED, language))


async def on_rating(update: Update, context: BotContext) -> None:
    """👍/👎 under a clinician's reply: only its asker's counts."""
    query, res = update.callback_query, context.resources
    parsed = parse_case_rating(query.data if query else None)
    if query is None or parsed is None or update.effective_user is None:
        return
    language = user_language(update, res)
    async with res.sessionmaker.begin() as session:
        case = await session.get(Case, parsed[1])
        asker = await session.get(User, case.user_id) if case is not None else None
        if case is None or asker is None:
            await query.answer(t(texts.FEEDBACK_STALE, language))
            return
        if asker.pseudonym != pseudonym_of(update, res):
            await query.answer(t(texts.FEEDBACK_NOT_YOURS, language))
            return
        await rate_case(session, case.id, parsed[0])
    await query.answer(t(texts.FEEDBACK_THANKS, language))
    await query.edit_message_reply_markup(None)
