"""/start: welcome, disclaimer and the consent buttons; ``/start CODE`` redeems an invite first."""

from __future__ import annotations

from telegram import Update

from bot.flows import access, consent
from bot.telegram import texts
from bot.telegram.cleaning import clean
from bot.telegram.context import BotContext
from bot.telegram.handlers.group import CONSENT_PAYLOAD, release_if_consented
from bot.telegram.i18n import t
from bot.telegram.identity import pseudonym_of, user_language
from bot.telegram.keyboards import consent_keyboard


async def send_consent_prompt(update: Update, context: BotContext) -> None:
    """Send the welcome, the disclaimer and the three consent buttons."""
    res = context.resources
    assert update.effective_chat is not None
    language = user_language(update, res)
    current = consent.current_text(res, language)
    await context.bot.send_message(
        update.effective_chat.id,
        f"{t(texts.WELCOME, language)}\n\n{current.text}",
        reply_markup=consent_keyboard(current.version, language),
    )


async def start(update: Update, context: BotContext) -> None:
    """Greet a user in private (after redeeming an invite code); in a group, point to a private chat."""
    chat = update.effective_chat
    if chat is None or update.effective_user is None:
        return
    res = context.resources
    if chat.type != chat.PRIVATE:
        await context.bot.send_message(chat.id, t(texts.GROUP_HELLO, user_language(update, res)))
        return
    payload = clean((context.args or [""])[0]).text  # an invite code is ASCII: the rest cannot match
    if payload and payload != CONSENT_PAYLOAD and not await redeem(update, context, payload):
        return
    if payload == CONSENT_PAYLOAD and await release_if_consented(update, context):
        return
    await send_consent_prompt(update, context)


async def redeem(update: Update, context: BotContext, code: str) -> bool:
    """Redeem an invite code; say whether it worked."""
    res = context.resources
    assert update.effective_chat is not None
    accepted = await access.redeem(res, pseudonym_of(update, res), code)
    text = texts.INVITE_ACCEPTED if accepted else texts.INVITE_REJECTED
    await context.bot.send_message(update.effective_chat.id, t(text, user_language(update, res)))
    return accepted
