"""The transcriber process: load Whisper, then turn recordings from Redis into transcripts until stopped.

One recording at a time (Whisper uses WHISPER_THREADS cores); more transcribers scale like workers,
as consumers of one group. The recording's audio is decoded in memory and leaves Redis with the
transcript's publication (storage.queue.voice).
"""

from __future__ import annotations

import asyncio
import threading
import time

import structlog
from redis.exceptions import RedisError

from inference import metrics
from inference.settings import InferenceSettings
from inference.transcribe import Heard, Transcriber
from inference.whisper_model import resolve_whisper_model
from storage.queue.connection import connect
from storage.queue.groups import Delivery
from storage.queue.voice import VoiceQueue, transcript_of, voice_queue_from_settings
from storage.queue.voice_messages import RecordingMessage
from storage.settings import StorageSettings

log = structlog.get_logger("inference.transcriber")


def heartbeat_s(claim_idle_ms: int) -> float:
    """Seconds between claim renewals during a transcription: a quarter of the claim time, at most 10."""
    return min(10.0, claim_idle_ms / 4000)


async def _heard(
    queue: VoiceQueue, transcriber: Transcriber, delivery: Delivery[RecordingMessage], name: str
) -> Heard:
    """Whisper in a thread; meanwhile the claim is renewed, so no other transcriber takes the recording."""
    recording = delivery.message
    work = asyncio.ensure_future(
        asyncio.to_thread(transcriber.transcribe, recording.audio, max_seconds=recording.max_seconds)
    )
    while not (await asyncio.wait({work}, timeout=heartbeat_s(queue.claim_idle_ms)))[0]:
        await queue.renew(name, delivery.entry_id)
    return work.result()


async def transcribe_one(
    queue: VoiceQueue, transcriber: Transcriber, delivery: Delivery[RecordingMessage], name: str
) -> str:
    """Transcribe one recording, publish its transcript; returns the status published."""
    recording = delivery.message
    with structlog.contextvars.bound_contextvars(question_id=recording.question_id):
        started = time.monotonic()
        try:
            heard = await _heard(queue, transcriber, delivery, name)
            status: str = heard.status
            text, language, audio_s = heard.text, heard.language, heard.audio_s
        except Exception as exc:  # a model error must not keep the audio in Redis: the user is told
            log.error("transcribe.error", error=type(exc).__name__)
            status, text, language, audio_s = "failed", "", "", 0.0
        took = time.monotonic() - started
        transcript = transcript_of(
            recording, status, transcriber=name, text=text, language=language, audio_s=audio_s
        )
        await queue.finish(delivery, transcript)
        metrics.TRANSCRIPTIONS.labels(status).inc()
        metrics.TRANSCRIPTION_SECONDS.observe(took)
        rtf = round(took / audio_s, 3) if audio_s else None
        log.info("transcribe.done", status=status, audio_s=round(audio_s, 2), took_s=round(took, 3), rtf=rtf)
        return status


async def run_transcriber(queue: VoiceQueue, transcriber: Transcriber, name: str, stop: asyncio.Event) -> int:
    """Read, transcribe and publish until ``stop`` is set; returns how many recordings were handled."""
    await queue.join(name)
    log.info("transcriber.ready", transcriber=name, multilingual=transcriber.multilingual)
    handled = 0
    while not stop.is_set():
        try:
            for delivery in await queue.read_recordings(name, block_ms=1_000):
                await transcribe_one(queue, transcriber, delivery, name)
                handled += 1
        except (RedisError, OSError) as exc:
            log.warning("transcriber.redis", error=type(exc).__name__)
            await asyncio.sleep(1.0)
    return handled


async def serve_transcriber(
    settings: InferenceSettings,
    storage: StorageSettings,
    redis_url: str,
    stop: asyncio.Event,
    loaded: threading.Event,
) -> int:
    """Load Whisper (``loaded`` is set then), transcribe until ``stop``; unfinished work stays pending."""
    data_dir = storage.ensure_data_dir()
    model_dir = await asyncio.to_thread(resolve_whisper_model, settings.whisper_model, data_dir)
    transcriber = await asyncio.to_thread(
        Transcriber, model_dir, threads=settings.whisper_threads, beam_size=settings.whisper_beam_size
    )
    loaded.set()
    log.info("whisper.loaded", model=model_dir.name, threads=settings.whisper_threads)
    redis = await connect(redis_url, attempts=5)
    try:
        queue = voice_queue_from_settings(redis, storage)
        handled = await run_transcriber(queue, transcriber, settings.transcriber_name, stop)
    finally:
        await redis.aclose()
    log.info("transcriber.stopped", handled=handled)
    return 0
