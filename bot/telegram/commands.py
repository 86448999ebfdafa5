"""The /help text and the command menu Telegram shows in private chats (setMyCommands), one per
language, made from the same lines: every ``/command – what it does`` line of the help is a menu entry.

The menu is published when the bot starts (each replica: the call is idempotent); a refusal is
logged and the bot runs on without a menu.
"""

from __future__ import annotations

import re

import structlog
from telegram import Bot, BotCommand, BotCommandScopeAllPrivateChats
from telegram.error import TelegramError

from bot.telegram import texts
from bot.telegram.i18n import LANGUAGES, t

log = structlog.get_logger("bot.commands")
HELP_PARTS = (
    texts.HELP,
    texts.VOICE_HELP,
    "",
    texts.CONVERSATION_HELP,
    texts.HUMAN_HELP,
    texts.SOURCES_HELP,
    texts.RIGHTS_HELP,
)
_ENTRY = re.compile(r"^/([a-z_]{1,32}) [–-] (.{1,256})$", re.MULTILINE)


def help_text(language: str) -> str:
    """What /help replies, in ``language``."""
    return "\n".join(t(part, language) if part else "" for part in HELP_PARTS)


def menu(language: str) -> list[BotCommand]:
    """The command menu in ``language``: the help's command lines, in their order."""
    return [BotCommand(name, about.strip()) for name, about in _ENTRY.findall(help_text(language))]


async def publish_menu(bot: Bot) -> None:
    """Set the private-chat command menu: English by default, and each translated language."""
    scope = BotCommandScopeAllPrivateChats()
    try:
        await bot.set_my_commands(menu("en"), scope=scope)
        for language in LANGUAGES:
            if language != "en":
                await bot.set_my_commands(menu(language), scope=scope, language_code=language)
    except TelegramError as exc:
        log.warning("commands.not_published", error=type(exc).__name__)
