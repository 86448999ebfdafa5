"""/start: welcome, disclaimer and the consent buttons."""

from __future__ import annotations

from telegram import Update
from telegram.ext import ContextTypes

from bot import resources, texts
from bot.keyboards import consent_keyboard


async def send_consent_prompt(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Send the welcome, the disclaimer and the three consent buttons."""
    res = resources.get(context.bot_data)
    assert update.effective_chat is not None
    await context.bot.send_message(
        update.effective_chat.id,
        f"{texts.WELCOME}\n\n{res.consent.text}",
        reply_markup=consent_keyboard(res.consent.version),
    )


async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Greet a user in private; in a group, point them to a private chat."""
    chat = update.effective_chat
    if chat is None or update.effective_user is None:
        return
    if chat.type != chat.PRIVATE:
        await context.bot.send_message(chat.id, texts.GROUP_PRIVATE_ONLY)
        return
    await send_consent_prompt(update, context)
