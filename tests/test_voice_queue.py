"""The voice streams on real Redis: a recording is added once, its audio leaves Redis with the transcript's
publication, a recording that keeps failing ends as a failure notice, and the limits of the voice flow."""

from __future__ import annotations

import base64
import uuid

from pydantic import SecretStr
from redis.asyncio import Redis

from bot.flows import voice as flow
from bot.settings import BotSettings
from bot.telegram import texts
from storage.queue import QueueNames
from storage.queue.voice import VoiceNames, VoiceQueue, transcript_of
from storage.queue.voice_messages import RecordingMessage, TranscriptMessage

AUDIO = b"OggS\x00fake opus pages" * 20


def _recording(**fields: object) -> RecordingMessage:
    base = {"question_id": uuid.uuid4().hex, "chat_id": 42, "message_id": 7, "user": "u1"}
    return RecordingMessage.model_validate(base | {"audio_b64": base64.b64encode(AUDIO).decode()} | fields)


def _voice(redis_client: Redis, queue_names: QueueNames) -> VoiceQueue:
    return VoiceQueue(
        redis_client, names=VoiceNames(queue_names.namespace), claim_idle_ms=1_000, max_deliveries=2
    )


async def test_recording_added_once_and_its_audio_deleted_with_the_transcript(
    redis_client: Redis, queue_names: QueueNames
) -> None:
    voice = _voice(redis_client, queue_names)
    await voice.join("asr-1")
    recording = _recording()
    assert await voice.enqueue_once(recording) and not await voice.enqueue_once(recording)
    assert await voice.waiting() == 1 and await voice.live_transcribers() == 1
    [delivery] = await voice.read_recordings("asr-1", block_ms=10)
    assert delivery.message.audio == AUDIO
    transcript = transcript_of(delivery.message, "ok", transcriber="asr-1", text="fever", language="en")
    assert await voice.finish(delivery, transcript) and not await voice.finish(delivery, transcript)
    assert await redis_client.xlen(voice.names.recordings) == 0  # the audio is gone
    [handled] = await voice.read_transcripts("bot", block_ms=10)
    assert handled.message.text == "fever" and "audio_b64" not in handled.message.model_dump_json()
    await voice.ack_transcript(handled.entry_id)
    assert await redis_client.xlen(voice.names.transcripts) == 0
    assert await voice.read_transcripts("bot", pending=True) == []


async def test_a_recording_delivered_too_often_becomes_a_failure_notice(
    redis_client: Redis, queue_names: QueueNames
) -> None:
    """A recording that crashes its transcriber every time is deleted, and its user told."""
    voice = _voice(redis_client, queue_names)
    await voice.join("asr-1")
    await voice.enqueue_once(_recording())
    for _ in range(2):  # taken, then the transcriber dies before finishing (taken again after restart)
        assert len(await voice.read_recordings("asr-1", block_ms=10)) == 1
    assert await voice.read_recordings("asr-1", block_ms=10) == []  # third delivery: given up
    assert await redis_client.xlen(voice.names.recordings) == 0
    [notice] = await voice.read_transcripts("bot", block_ms=10)
    assert notice.message.status == "failed" and notice.message.text == ""


async def test_a_long_transcription_keeps_its_claim_until_another_takes_it(
    redis_client: Redis, queue_names: QueueNames
) -> None:
    voice = _voice(redis_client, queue_names)
    await voice.join("asr-1")
    await voice.enqueue_once(_recording())
    [delivery] = await voice.read_recordings("asr-1", block_ms=10)
    assert await voice.renew("asr-1", delivery.entry_id)
    assert not await voice.renew("asr-2", delivery.entry_id)  # not asr-2's
    group = voice.names.transcribers_group
    await redis_client.xclaim(voice.names.recordings, group, "asr-2", 0, [delivery.entry_id])
    assert not await voice.renew("asr-1", delivery.entry_id)  # taken over: asr-1 lost it


def _settings() -> BotSettings:
    return BotSettings(telegram_bot_token=SecretStr("1:x"), voice_max_seconds=60, voice_max_bytes=2_000_000)


def test_limits_and_the_answer_language() -> None:
    settings = _settings()
    assert flow.refusal(60, 2_000_000, settings) is None and flow.refusal(None, None, settings) is None
    long = flow.refusal(61.2, 10, settings)
    assert long is not None and long.kind == "too_long" and long.fields == {"seconds": 62, "limit": 60}
    big = flow.refusal(5, 3_500_000, settings)
    assert big is not None and texts.VOICE_REFUSALS[big.kind].format(
        **big.fields
    ) == texts.VOICE_TOO_BIG.format(size="3.5", limit="2")
    heard = TranscriptMessage(question_id="q" * 8, chat_id=1, message_id=1, user="u", language="fr")
    assert flow.answer_language(heard) == "fr"  # no /lang choice: Whisper's language
    assert flow.answer_language(heard.model_copy(update={"chosen_language": "sw"})) == "sw"
    assert (
        flow.answer_language(heard.model_copy(update={"language": "de", "fallback_language": "es"})) == "es"
    )
    silent = heard.model_copy(update={"status": "ok", "text": "  "})
    assert flow.transcript_refusal(silent, settings) == flow.Refusal("silent")
    assert flow.transcript_refusal(heard.model_copy(update={"text": "fever"}), settings) is None
