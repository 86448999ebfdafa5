"""Speech to text with faster-whisper (CTranslate2, int8 on CPU): one recording, in memory, to a Heard.

The recording is decoded from its bytes in memory (PyAV): it never touches the disk. Silence and
noise are cut by Whisper's voice-activity filter, so a silent note yields no text rather than the
model's guesses; segments Whisper itself marks as no speech are dropped too.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import av
from faster_whisper import WhisperModel, decode_audio

SAMPLE_RATE = 16_000
NO_SPEECH = 0.6  # Whisper's own rule: a segment this likely silent, and decoded with low confidence,
LOW_LOGPROB = -1.0  # is not speech

HeardStatus = Literal["ok", "silent", "not_audio", "too_long"]


@dataclass(frozen=True)
class Heard:
    """What was heard in one recording: status, text, Whisper's language and the audio's length."""

    status: HeardStatus
    text: str = ""
    language: str = ""
    audio_s: float = 0.0


class Transcriber:
    """A loaded Whisper model; ``transcribe`` is blocking (run it in a thread)."""

    def __init__(self, model_dir: Path, *, threads: int = 1, beam_size: int = 1) -> None:
        self.model_dir = model_dir
        self.beam_size = beam_size
        self.model = WhisperModel(str(model_dir), device="cpu", compute_type="int8", cpu_threads=threads)

    @property
    def multilingual(self) -> bool:
        """Whether the model detects languages (``tiny.en`` and the like do not)."""
        return bool(self.model.model.is_multilingual)

    def transcribe(self, audio: bytes, *, max_seconds: float) -> Heard:
        """The text of ``audio`` (any container and codec FFmpeg reads), or why there is none."""
        try:
            samples = decode_audio(io.BytesIO(audio), sampling_rate=SAMPLE_RATE)
        except (av.error.FFmpegError, ValueError, IndexError):
            return Heard("not_audio")
        seconds = len(samples) / SAMPLE_RATE
        if seconds > max_seconds:
            return Heard("too_long", audio_s=seconds)
        if not len(samples):
            return Heard("silent")
        segments, info = self.model.transcribe(
            samples, beam_size=self.beam_size, vad_filter=True, condition_on_previous_text=False
        )
        spoken = [s for s in segments if not (s.no_speech_prob > NO_SPEECH and s.avg_logprob < LOW_LOGPROB)]
        text = " ".join(s.text.strip() for s in spoken).strip()
        if not text:
            return Heard("silent", audio_s=seconds)
        return Heard("ok", text=text, language=info.language, audio_s=seconds)
