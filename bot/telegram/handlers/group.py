"""Groups: /enable and /disable by administrators, the bot's hello, and questions held for consent."""

from __future__ import annotations

from telegram import Message, Update
from telegram.constants import ChatMemberStatus
from telegram.ext import filters

from bot.flows import groups
from bot.telegram import texts
from bot.telegram.context import BotContext
from bot.telegram.i18n import t
from bot.telegram.identity import user_language
from bot.telegram.questions import queue_question, reply
from storage.queue import QuestionMessage

ADMINS = (ChatMemberStatus.OWNER, ChatMemberStatus.ADMINISTRATOR)
CONSENT_PAYLOAD = "consent"


class _Addressed(filters.MessageFilter):
    """A message that mentions the bot by @username or replies to one of its messages."""

    def filter(self, message: Message) -> bool:
        """Whether the bot is addressed (works in privacy mode: Telegram delivers exactly these)."""
        bot = message.get_bot()
        replied = message.reply_to_message
        if replied is not None and replied.from_user is not None and replied.from_user.id == bot.id:
            return True
        mention = f"@{bot.username}".lower()
        return any(text.lower() == mention for text in message.parse_entities(["mention"]).values())


ADDRESSED = _Addressed()


async def enable(update: Update, context: BotContext) -> None:
    """/enable: an administrator switches the bot on in this group."""
    await _switch(update, context, on=True)


async def disable(update: Update, context: BotContext) -> None:
    """/disable: an administrator switches the bot off in this group."""
    await _switch(update, context, on=False)


async def _switch(update: Update, context: BotContext, *, on: bool) -> None:
    """Check the sender is an administrator (getChatMember), then store the switch."""
    message, user, res = update.effective_message, update.effective_user, context.resources
    if message is None or user is None:
        return
    language = user_language(update, res)
    if message.chat.type == message.chat.PRIVATE:
        await message.reply_text(t(texts.GROUP_ONLY, language))
        return
    member = await context.bot.get_chat_member(message.chat.id, user.id)
    if member.status not in ADMINS:
        await message.reply_text(t(texts.ADMINS_ONLY, language))
        return
    await groups.switch(res, res.pseudonyms.chat(message.chat.id), on, res.pseudonyms.user(user.id))
    await message.reply_text(t(texts.GROUP_ENABLED if on else texts.GROUP_DISABLED_DONE, language))


async def added_to_group(update: Update, context: BotContext) -> None:
    """The bot was added to a group: say hello and how an administrator switches it on."""
    change = update.my_chat_member
    if change is None or change.chat.type not in (change.chat.GROUP, change.chat.SUPERGROUP):
        return
    if change.new_chat_member.status in (
        ChatMemberStatus.MEMBER,
        *ADMINS,
    ) and change.old_chat_member.status in (
        ChatMemberStatus.LEFT,
        ChatMemberStatus.BANNED,
    ):
        await context.bot.send_message(
            change.chat.id, t(texts.GROUP_HELLO, user_language(update, context.resources))
        )


async def hold_for_consent(context: BotContext, question: QuestionMessage, language: str) -> None:
    """Keep a group question until its asker consents in private; it is dropped after a timeout."""
    res = context.resources
    await groups.hold(res, question, language)
    link = f"https://t.me/{context.bot.username}?start={CONSENT_PAYLOAD}"
    minutes = max(1, round(res.settings.consent_hold_s / 60))
    await reply(
        context.bot, question, t(texts.GROUP_CONSENT_NEEDED, language).format(link=link, minutes=minutes)
    )


async def release_held(update: Update, context: BotContext) -> None:
    """After a consent choice in private: queue the user's held group question, if any."""
    await release_if_consented(update, context)


async def release_if_consented(update: Update, context: BotContext) -> bool:
    """Queue the consented user's held group question in its group and say so; True if there was one."""
    user, chat, res = update.effective_user, update.effective_chat, context.resources
    if user is None or chat is None:
        return False
    held = await groups.release(res, res.pseudonyms.user(user.id))
    if held is None:
        return False
    language = user_language(update, res)
    if await queue_question(context.bot, res, held, language):
        await context.bot.send_message(chat.id, t(texts.GROUP_QUESTION_RELEASED, language))
    return True
