"""A voice note or audio file (private, or a reply to the bot in a group): check it, fetch it (getFile),
queue it for a transcriber."""

from __future__ import annotations

import base64
import time
from datetime import timedelta

import structlog
from telegram import Audio, Message, Update, Voice

from bot.flows import consent, groups
from bot.flows import voice as flow
from bot.telegram import texts
from bot.telegram.context import BotContext
from bot.telegram.handlers.ask import question_id_for
from bot.telegram.handlers.group import CONSENT_PAYLOAD
from bot.telegram.handlers.start import send_consent_prompt
from bot.telegram.i18n import t
from bot.telegram.identity import pseudonym_of, user_language
from storage.queue.voice_messages import RecordingMessage

log = structlog.get_logger("bot.voice")


def _seconds(duration: int | timedelta | None) -> float | None:
    """A Telegram duration (seconds, or a timedelta under PTB_TIMEDELTA) in seconds."""
    if duration is None:
        return None
    return duration.total_seconds() if isinstance(duration, timedelta) else float(duration)


async def _refuse(message: Message, refusal: flow.Refusal, language: str) -> None:
    """The kind reply of a refusal."""
    await message.reply_text(t(texts.VOICE_REFUSALS[refusal.kind], language).format(**refusal.fields))


async def _consent_first(update: Update, context: BotContext, language: str) -> None:
    """Private: the consent prompt. Group: a link to a private consent (the note is not kept meanwhile)."""
    message = update.effective_message
    assert message is not None
    if message.chat.type == message.chat.PRIVATE:
        await send_consent_prompt(update, context)
        return
    link = f"https://t.me/{context.bot.username}?start={CONSENT_PAYLOAD}"
    await message.reply_text(t(texts.VOICE_GROUP_CONSENT, language).format(link=link))


async def voice_note(update: Update, context: BotContext) -> None:
    """Limits first (as Telegram describes the file), then a live transcriber, consent, the download."""
    message, res = update.effective_message, context.resources
    if message is None or update.effective_user is None:
        return
    media: Voice | Audio | None = message.voice or message.audio
    if media is None:
        return
    language = user_language(update, res)
    refusal = flow.refusal(_seconds(media.duration), media.file_size, res.settings)
    if refusal is not None:
        await _refuse(message, refusal, language)
        return
    voice = res.voice
    if not await voice.live_transcribers():
        await message.reply_text(t(texts.VOICE_UNAVAILABLE, language))
        return
    if message.chat.type != message.chat.PRIVATE and not await groups.enabled(
        res, res.pseudonyms.chat(message.chat.id)
    ):
        await message.reply_text(t(texts.GROUP_DISABLED, language))
        return
    user = await consent.consented_user(res, pseudonym_of(update, res))
    if user is None:
        await _consent_first(update, context, language)
        return
    audio = bytes(await (await media.get_file()).download_as_bytearray())  # in memory, never on disk
    if len(audio) > res.settings.voice_max_bytes:
        await _refuse(message, flow.too_big(len(audio), res.settings), language)
        return
    pseudonym = pseudonym_of(update, res)
    recording = RecordingMessage(
        question_id=question_id_for(update, message, res.pseudonyms.chat(message.chat.id)),
        chat_id=message.chat.id, message_id=message.message_id, user=pseudonym, chat_type=message.chat.type,
        chosen_language=user.language or "", fallback_language=language,
        audio_b64=base64.b64encode(audio).decode("ascii"), max_seconds=res.settings.voice_max_seconds,
        received_at=time.time(), update_id=update.update_id,
    )  # fmt: skip
    with structlog.contextvars.bound_contextvars(
        question_id=recording.question_id, update_id=update.update_id
    ):
        if await voice.enqueue_once(recording):
            log.info("voice.enqueued", size=len(audio), seconds=_seconds(media.duration))
    await res.progress.start_typing(message.chat.id)
