"""Runs before every other handler: channels, other bots, very fast repeats and access control.

Raising ApplicationHandlerStop ends the update here; returning lets the other handlers run.
"""

from __future__ import annotations

import structlog
from telegram import Update
from telegram.ext import ApplicationHandlerStop

from bot.resources import Resources
from bot.telegram import texts
from bot.telegram.context import BotContext
from bot.telegram.i18n import t
from bot.telegram.identity import user_language
from storage.repositories.grants import has_grant

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
    user_count = await res.state.hit(res.pseudonyms.user(update.effective_user.id))
    over_user = user_count > res.settings.user_messages_per_minute
    over_group = False
    if chat.type != chat.PRIVATE:
        group_count = await res.state.hit(res.pseudonyms.chat(chat.id))
        over_group = group_count > res.settings.group_messages_per_minute
    if not (over_user or over_group):
        return False
    log.info("gate.rate_limited", group=over_group)
    if over_user and user_count == res.settings.user_messages_per_minute + 1:
        await context.bot.send_message(chat.id, t(texts.SLOW_DOWN, user_language(update, res)))
    return True


async def _allowed(update: Update, res: Resources) -> bool:
    """Allowlisted user or group, an invite holder, or someone redeeming an invite."""
    chat, user = update.effective_chat, update.effective_user
    if chat is not None and chat.id in (res.settings.admin_chat_id, res.settings.oncall_chat_id):
        return True
    if chat is not None and chat.type != chat.PRIVATE:
        return chat.id in res.settings.allowed_chat_ids
    if user is None or user.id in res.settings.allowed_user_ids:
        return user is not None
    message = update.effective_message
    if message is not None and (message.text or "").startswith("/start "):
        return True  # an invite code is being redeemed
    return await _granted(res, res.pseudonyms.user(user.id))


async def _granted(res: Resources, pseudonym: str) -> bool:
    """Whether the user redeemed an invite (asked of the database every time: a /forget handled by
    another bot process takes the grant away at once)."""
    async with res.sessionmaker() as session:
        return await has_grant(session, pseudonym)


async def _refuse(update: Update, res: Resources) -> None:
    """Tell a private user how to get in; stay silent in groups that are not allowed."""
    chat = update.effective_chat
    log.info("gate.not_allowed")
    if chat is not None and chat.type == chat.PRIVATE and update.effective_message is not None:
        await update.effective_message.reply_text(t(texts.NOT_INVITED, user_language(update, res)))
    elif update.callback_query is not None:
        await update.callback_query.answer(t(texts.NOT_INVITED, user_language(update, res)))
