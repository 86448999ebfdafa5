"""The decisions of the voice path, without Telegram: which recordings are taken, what a transcript
becomes (the question, or which kind reply), and the language of the answer."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from bot.languages import LANGUAGES
from bot.settings import BotSettings
from storage.queue import QuestionMessage
from storage.queue.voice_messages import TranscriptMessage

MB = 1_000_000
KINDS = ("too_long", "too_big", "silent", "not_audio", "failed")


@dataclass(frozen=True)
class Refusal:
    """Why a recording gives no question (one of KINDS; bot.telegram.texts.VOICE_REFUSALS says it),
    with the figures the reply quotes."""

    kind: str
    fields: dict[str, object] = field(default_factory=dict)


def too_long(seconds: float, settings: BotSettings) -> Refusal:
    """The reply to a recording longer than VOICE_MAX_SECONDS."""
    return Refusal("too_long", {"seconds": math.ceil(seconds), "limit": settings.voice_max_seconds})


def too_big(size: int, settings: BotSettings) -> Refusal:
    """The reply to a recording larger than VOICE_MAX_BYTES."""
    limit = settings.voice_max_bytes / MB
    return Refusal("too_big", {"size": f"{size / MB:.1f}", "limit": f"{limit:g}"})


def refusal(seconds: float | None, size: int | None, settings: BotSettings) -> Refusal | None:
    """Why a recording of ``seconds`` and ``size`` bytes (as Telegram says) is refused (None: taken)."""
    if seconds is not None and seconds > settings.voice_max_seconds:
        return too_long(seconds, settings)
    if size is not None and size > settings.voice_max_bytes:
        return too_big(size, settings)
    return None


def answer_language(transcript: TranscriptMessage) -> str:
    """The user's /lang choice; else the language Whisper heard, when the bot speaks it; else Telegram's."""
    if transcript.chosen_language in LANGUAGES:
        return transcript.chosen_language
    if transcript.language in LANGUAGES:
        return transcript.language
    return transcript.fallback_language


def transcript_refusal(transcript: TranscriptMessage, settings: BotSettings) -> Refusal | None:
    """The kind reply when nothing usable was heard (None: the transcript is a question)."""
    if transcript.status == "ok" and transcript.text.strip():
        return None
    if transcript.status == "too_long":
        return too_long(transcript.audio_s, settings)
    return Refusal(transcript.status if transcript.status in KINDS else "silent")


def question_of(transcript: TranscriptMessage, text: str, language: str, now: float) -> QuestionMessage:
    """The question a transcript becomes: asked when the voice note arrived, in ``language``."""
    return QuestionMessage(
        question_id=transcript.question_id, chat_id=transcript.chat_id, message_id=transcript.message_id,
        user=transcript.user, chat_type=transcript.chat_type, language=language, text=text,
        received_at=transcript.received_at or now, enqueued_at=now, update_id=transcript.update_id,
    )  # fmt: skip
