"""All handlers, registered in one place."""

from __future__ import annotations

from telegram import Update
from telegram.ext import (
    Application,
    CallbackQueryHandler,
    ChatMemberHandler,
    CommandHandler,
    MessageHandler,
    TypeHandler,
    filters,
)

import bot.telegram.handlers.rights as rights
from bot.telegram.handlers import (
    ask,
    cancel,
    consent,
    conversation,
    errors,
    fallback,
    feedback,
    gate,
    group,
    handover,
    info,
    lang,
    sources,
    start,
    voice,
)

PRIVATE = filters.ChatType.PRIVATE
NEW_MESSAGE = filters.UpdateType.MESSAGE
SPOKEN = filters.VOICE | filters.AUDIO  # voice notes and audio files (in a group: replies to the bot)


def register(application: Application) -> None:  # type: ignore[type-arg]
    """Add every handler and the error handler to the application."""
    # Before everything: channels, other bots, rate limits, access (may stop the update).
    application.add_handler(TypeHandler(Update, lang.recall), group=-3)  # the sender's language first
    application.add_handler(TypeHandler(Update, gate.gate), group=-2)
    # A reply to a 👎 reason prompt is the reason, not a question.
    reason = NEW_MESSAGE & filters.REPLY & filters.TEXT & ~filters.COMMAND
    application.add_handler(MessageHandler(reason, feedback.reason), group=-1)
    # A button pressed outside a chat (inline mode, no message): a kind answer and nothing else.
    application.add_handler(CallbackQueryHandler(fallback.detached_button), group=-1)
    application.add_handlers(
        [
            MessageHandler(filters.UpdateType.EDITED, fallback.edited),
            CommandHandler("start", start.start),
            CommandHandler("help", info.help_command),
            CommandHandler("privacy", info.privacy),
            CommandHandler("cancel", cancel.cancel),
            CommandHandler("new", conversation.new_conversation),
            CommandHandler("consent", rights.consent_command, filters=PRIVATE),
            CommandHandler("withdraw", rights.withdraw, filters=PRIVATE),
            CommandHandler("forget", rights.forget, filters=PRIVATE),
            CommandHandler("sources", sources.sources, filters=PRIVATE),
            CommandHandler("ask", ask.ask_command),
            CommandHandler("lang", lang.lang),
            CommandHandler("enable", group.enable),
            CommandHandler("disable", group.disable),
            CallbackQueryHandler(feedback.on_feedback, pattern=r"^fb:"),
            CommandHandler("human", handover.human),
            CallbackQueryHandler(handover.on_rating, pattern=r"^hv:(up|down):"),
            CallbackQueryHandler(handover.on_button, pattern=r"^hv:"),
            CallbackQueryHandler(lang.on_language_button, pattern=r"^lang:"),
            ChatMemberHandler(group.added_to_group, ChatMemberHandler.MY_CHAT_MEMBER),
            CallbackQueryHandler(consent.on_consent_button),
            MessageHandler(PRIVATE & NEW_MESSAGE & filters.COMMAND, fallback.unknown_command),
            MessageHandler(PRIVATE & NEW_MESSAGE & filters.TEXT, ask.ask),
            MessageHandler(PRIVATE & NEW_MESSAGE & SPOKEN, voice.voice_note),
            MessageHandler(PRIVATE & NEW_MESSAGE & ~filters.TEXT, fallback.non_text),
            MessageHandler(
                filters.ChatType.GROUPS & NEW_MESSAGE & filters.TEXT & ~filters.COMMAND & group.ADDRESSED,
                ask.addressed,
            ),
            MessageHandler(
                filters.ChatType.GROUPS & NEW_MESSAGE & SPOKEN & group.ADDRESSED, voice.voice_note
            ),
        ]
    )
    # After a consent button (handled above): queue the user's question held in a group.
    application.add_handler(CallbackQueryHandler(group.release_held, pattern=r"^consent:"), group=1)
    application.add_error_handler(errors.on_error)
