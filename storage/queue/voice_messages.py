"""The message schema of the voice streams: a recording waiting for a transcriber, and its transcript."""

from __future__ import annotations

import base64
from typing import Literal

from pydantic import Field

from storage.queue.messages import _Message

TranscriptStatus = Literal["ok", "silent", "not_audio", "too_long", "failed"]


class RecordingMessage(_Message):
    """A voice note waiting for a transcriber; its audio lives only in this entry, deleted once transcribed.

    Raw chat ids live only in Redis, never in the database (as for questions).
    """

    question_id: str = Field(min_length=8, max_length=64)
    chat_id: int
    message_id: int
    user: str = Field(description="HMAC pseudonym of the speaker")
    chat_type: str = "private"
    chosen_language: str = Field(default="", description="the user's /lang choice (empty: none)")
    fallback_language: str = Field(default="en", description="spoken when Whisper's language is not served")
    audio_b64: str = Field(description="the recording as sent (OGG/Opus, MP3...), base64")
    max_seconds: float = Field(default=120.0, gt=0, description="longer recordings are refused")
    received_at: float = 0.0
    update_id: int | None = None

    @property
    def audio(self) -> bytes:
        """The recording's bytes."""
        return base64.b64decode(self.audio_b64)


class TranscriptMessage(_Message):
    """What a transcriber heard in one recording (or why it heard nothing), for the bot to handle."""

    question_id: str
    chat_id: int
    message_id: int
    user: str
    chat_type: str = "private"
    chosen_language: str = ""
    fallback_language: str = "en"
    status: TranscriptStatus = "ok"
    text: str = ""
    language: str = Field(default="", description="the language Whisper detected")
    audio_s: float = 0.0
    received_at: float = 0.0
    transcribed_at: float = 0.0
    transcriber: str = ""
    update_id: int | None = None
