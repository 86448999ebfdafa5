"""Runs before every other handler: channels, other bots, very fast repeats and access control.

Raising ApplicationHandlerStop ends the update here; returning lets the other handlers run. The
decisions are ``bot.flows.access``'s.
"""

from __future__ import annotations

import structlog
from telegram import Update
from telegram.ext import ApplicationHandlerStop

from bot.flows import access
from bot.resources import Resources
from bot.telegram import texts
from bot.telegram.context import BotContext
from bot.telegram.i18n import t
from bot.telegram.identity import user_language

log = structlog.get_logger("bot.gate")


async def gate(update: Update, context: BotContext) -> None:
    """Stop what the bot must not handle; let everything else through."""
    res = context.resources
    if update.channel_post is not None or update.edited_channel_post is not None:
        await _channel(update, context)
    user = update.effective_user
    if user is not None and user.is_bot and user.id != context.bot.id:
        log.info("gate.other_bot")
        raise ApplicationHandlerStop
    if update.effective_message is not None and user is not None and await _too_fast(update, context, res):
        raise ApplicationHandlerStop
    if res.settings.restricted and not await _allowed(update, res):
        await _refuse(update, res)
        raise ApplicationHandlerStop


async def _channel(update: Update, context: BotContext) -> None:
    """A channel post: say once where the bot works (new posts only), then stop."""
    if update.channel_post is not None:
        log.info("gate.channel_post")
        await context.bot.send_message(update.channel_post.chat.id, texts.CHANNEL_UNSUPPORTED)
    raise ApplicationHandlerStop


async def _too_fast(update: Update, context: BotContext, res: Resources) -> bool:
    """Per-user and per-group message rate limits; the first message over the limit gets a reply."""
    assert update.effective_user is not None
    assert update.effective_chat is not None
    chat = update.effective_chat
    group = res.pseudonyms.chat(chat.id) if chat.type != chat.PRIVATE else None
    rate = await access.rate(res, res.pseudonyms.user(update.effective_user.id), group)
    if not rate.limited:
        return False
    log.info("gate.rate_limited", group=rate.over_group)
    if rate.first_over:
        await context.bot.send_message(chat.id, t(texts.SLOW_DOWN, user_language(update, res)))
    return True


async def _allowed(update: Update, res: Resources) -> bool:
    """Allowlisted user or group, an invite holder, or someone redeeming an invite."""
    chat, user, message = update.effective_chat, update.effective_user, update.effective_message
    return await access.allowed(
        res,
        chat_id=chat.id if chat is not None else None,
        private=chat is None or chat.type == chat.PRIVATE,
        user_id=user.id if user is not None else None,
        redeeming=message is not None and (message.text or "").startswith("/start "),
    )


async def _refuse(update: Update, res: Resources) -> None:
    """Tell a private user how to get in; stay silent in groups that are not allowed."""
    chat = update.effective_chat
    log.info("gate.not_allowed")
    if chat is not None and chat.type == chat.PRIVATE and update.effective_message is not None:
        await update.effective_message.reply_text(t(texts.NOT_INVITED, user_language(update, res)))
    elif update.callback_query is not None:
        await update.callback_query.answer(t(texts.NOT_INVITED, user_language(update, res)))
