"""All handlers, registered in one place."""

from __future__ import annotations

from telegram.ext import (
    Application,
    CallbackQueryHandler,
    CommandHandler,
    MessageHandler,
    filters,
)

from bot.handlers import ask, cancel, consent, errors, fallback, info, start

PRIVATE = filters.ChatType.PRIVATE
NEW_MESSAGE = filters.UpdateType.MESSAGE


def register(application: Application) -> None:  # type: ignore[type-arg]
    """Add every handler and the error handler to the application."""
    application.add_handlers(
        [
            MessageHandler(filters.UpdateType.EDITED, fallback.edited),
            CommandHandler("start", start.start),
            CommandHandler("help", info.help_command),
            CommandHandler("privacy", info.privacy),
            CommandHandler("cancel", cancel.cancel),
            CallbackQueryHandler(consent.on_consent_button),
            MessageHandler(PRIVATE & NEW_MESSAGE & filters.COMMAND, fallback.unknown_command),
            MessageHandler(PRIVATE & NEW_MESSAGE & filters.TEXT, ask.ask),
            MessageHandler(PRIVATE & NEW_MESSAGE & ~filters.TEXT, fallback.non_text),
            MessageHandler(filters.ChatType.GROUPS & NEW_MESSAGE & filters.TEXT, fallback.group_text),
        ]
    )
    application.add_error_handler(errors.on_error)
