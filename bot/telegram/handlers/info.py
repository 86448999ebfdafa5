"""/help and /privacy."""

from __future__ import annotations

from telegram import Update

from bot.flows import rights
from bot.telegram import texts
from bot.telegram.commands import help_text
from bot.telegram.context import BotContext
from bot.telegram.i18n import t
from bot.telegram.identity import pseudonym_of, user_language

_CHOICES = {"none": texts.CHOICE_NONE, "service": texts.CHOICE_SERVICE, "both": texts.CHOICE_BOTH}


async def help_command(update: Update, context: BotContext) -> None:
    """Say what the bot does and list the commands."""
    if update.effective_message is not None:
        language = user_language(update, context.resources)
        await update.effective_message.reply_text(help_text(language))


async def privacy(update: Update, context: BotContext) -> None:
    """Say what is kept, for how long, who reads it, and the user's current choice."""
    message, res = update.effective_message, context.resources
    if message is None or update.effective_user is None:
        return
    choice = _CHOICES[await rights.privacy_choice(res, pseudonym_of(update, res))]
    language = user_language(update, res)
    await message.reply_text(
        t(texts.PRIVACY, language).format(
            retention_days=res.settings.retention_days,
            reviewers=res.settings.reviewers,
            choice=t(choice, language),
        )
        + f"\n{t(texts.VOICE_PRIVACY, language)}\n\n{t(texts.RIGHTS_HELP, language)}"
    )
