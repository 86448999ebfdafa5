"""Redis Streams for voice notes: recordings to the transcribers, transcripts back to the bot.

A recording's audio is in Redis only while it waits or is transcribed: the transcriber publishes the
transcript, acks and deletes the recording in one script, and a recording that cannot be transcribed
(delivered too often) is deleted the same way with a failure notice. A transcript entry is deleted
as soon as the bot has handled it (its text then travels on as a question, or is dropped).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from storage.errors import BadQueueMessageError
from storage.queue import groups
from storage.queue.groups import Delivery, decode
from storage.queue.voice_messages import RecordingMessage, TranscriptMessage
from storage.settings import StorageSettings

# KEYS recordings stream, enqueued marker; ARGV payload, ttl, maxlen. Nil when added before.
_ENQUEUE_ONCE = """
if not redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[2]) then
  return false
end
return redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], '*', 'm', ARGV[1])
"""


@dataclass(frozen=True)
class VoiceNames:
    """Stream, group and key names of the voice path, under the queue's namespace."""

    namespace: str = "meditron"
    transcribers_group: str = "transcribers"
    bots_group: str = "bots"

    @property
    def recordings(self) -> str:
        """Stream of recordings waiting for a transcriber (audio inside)."""
        return f"{self.namespace}:recordings"

    @property
    def transcripts(self) -> str:
        """Stream of transcripts waiting for the bot."""
        return f"{self.namespace}:transcripts"

    def enqueued_key(self, question_id: str) -> str:
        """Key whose existence means the recording was put on the stream (enqueue at most once)."""
        return f"{self.namespace}:recording:{question_id}"

    def transcribed_key(self, question_id: str) -> str:
        """Key whose existence means the recording's transcript was published (publish at most once)."""
        return f"{self.namespace}:transcribed:{question_id}"


class VoiceQueue:
    """The recordings and transcripts streams on one Redis server.

    A transcriber is *alive* while it read the recordings stream within ``alive_s`` (it reads every
    second while it waits; WORKER_DOWN_S, as for workers).
    """

    def __init__(
        self,
        redis: Redis,
        *,
        names: VoiceNames | None = None,
        maxlen: int = 1_000,
        claim_idle_ms: int = 120_000,
        max_deliveries: int = 3,
        entry_ttl_s: int = 86_400,
        alive_s: float = 30.0,
    ) -> None:
        self.redis = redis
        self.names = names or VoiceNames()
        self.maxlen = maxlen
        self.claim_idle_ms = claim_idle_ms
        self.max_deliveries = max_deliveries
        self.entry_ttl_s = entry_ttl_s
        self.alive_s = alive_s

    async def ensure_groups(self) -> None:
        """Create both streams and their consumer groups if they do not exist."""
        names = self.names
        await groups.ensure_groups(
            self.redis,
            [(names.recordings, names.transcribers_group), (names.transcripts, names.bots_group)],
        )

    async def join(self, consumer: str) -> None:
        """Make ``consumer`` a transcriber of the group now (it counts as alive before its first read)."""
        await self.ensure_groups()
        await self.redis.xgroup_createconsumer(self.names.recordings, self.names.transcribers_group, consumer)

    # -- bot side: recordings in, transcripts out -----------------------------------------

    async def enqueue_once(self, recording: RecordingMessage) -> bool:
        """Add a recording unless it was added before (an update handled again); True when added."""
        script = self.redis.register_script(_ENQUEUE_ONCE)
        keys = [self.names.recordings, self.names.enqueued_key(recording.question_id)]
        args: list[str | int] = [recording.model_dump_json(), self.entry_ttl_s, self.maxlen]
        return bool(await script(keys=keys, args=args))

    async def live_transcribers(self) -> int:
        """Transcribers alive now (none when no transcriber ever started)."""
        try:
            consumers = await self.redis.xinfo_consumers(self.names.recordings, self.names.transcribers_group)
        except ResponseError:
            return 0
        return sum(1 for c in consumers if int(c["idle"]) < self.alive_s * 1000)

    async def read_transcripts(
        self, consumer: str, *, pending: bool = False, count: int = 10, block_ms: int = 1_000
    ) -> list[Delivery[TranscriptMessage]]:
        """Transcripts to handle: with ``pending`` this consumer's unacked ones and those of a dead bot."""
        stream, group = self.names.transcripts, self.names.bots_group
        read = await groups.read_group(
            self.redis,
            stream,
            group,
            consumer,
            start="0" if pending else ">",
            count=count,
            block_ms=None if pending else block_ms,
        )
        items = [(entry_id, fields) for entry_id, fields in read if fields]
        if pending:
            items += await groups.claim_idle(
                self.redis, stream, group, consumer, idle_ms=self.claim_idle_ms, count=count
            )
        return await groups.decode_or_ack(TranscriptMessage, items, self.ack_transcript)

    async def ack_transcript(self, entry_id: str) -> None:
        """Ack and delete a handled transcript: its text does not linger in Redis."""
        await groups.ack_delete(self.redis, self.names.transcripts, self.names.bots_group, entry_id)

    # -- transcriber side ---------------------------------------------------------------

    async def read_recordings(
        self, consumer: str, *, block_ms: int = 1_000
    ) -> list[Delivery[RecordingMessage]]:
        """One recording: this consumer's unfinished one (after a restart), a dead one's, or a new one.

        A recording delivered more than ``max_deliveries`` times (it crashes its transcriber) is
        deleted with a failure notice to its user instead.
        """
        stream, group = self.names.recordings, self.names.transcribers_group
        own = await groups.read_group(self.redis, stream, group, consumer, start="0", count=1)
        items = [(i, f) for i, f in own if f]
        if not items:
            items = await groups.claim_idle(
                self.redis, stream, group, consumer, idle_ms=self.claim_idle_ms, count=1
            )
        if not items:
            new = await groups.read_group(
                self.redis, stream, group, consumer, start=">", count=1, block_ms=block_ms
            )
            items = [(i, f) for i, f in new if f]
        return await self._accept(items)

    async def _accept(self, items: Sequence[tuple[str, Any]]) -> list[Delivery[RecordingMessage]]:
        """Decode entries with delivery counts; drop the malformed, give up on the too-often delivered."""
        accepted = []
        for entry_id, fields in items:
            deliveries = await groups.times_delivered(
                self.redis, self.names.recordings, self.names.transcribers_group, entry_id
            )
            try:
                recording = decode(RecordingMessage, entry_id, fields)
            except BadQueueMessageError:
                await self._drop(entry_id)
                continue
            delivery = Delivery(entry_id, recording, deliveries)
            if deliveries > self.max_deliveries:
                await self.finish(delivery, transcript_of(recording, "failed", transcriber=""))
                continue
            accepted.append(delivery)
        return accepted

    async def _drop(self, entry_id: str) -> None:
        """Ack and delete a recording entry."""
        await groups.ack_delete(self.redis, self.names.recordings, self.names.transcribers_group, entry_id)

    async def finish(self, delivery: Delivery[RecordingMessage], transcript: TranscriptMessage) -> bool:
        """Publish the transcript, ack and delete the recording (its audio) in one step.

        False when a transcript was published before (by another transcriber, or a retried call).
        """
        names = self.names
        return await groups.publish_and_ack(
            self.redis,
            source=names.recordings,
            group=names.transcribers_group,
            entry_id=delivery.entry_id,
            target=names.transcripts,
            marker=names.transcribed_key(delivery.message.question_id),
            payload=transcript.model_dump_json(),
            maxlen=self.maxlen,
            ttl_s=self.entry_ttl_s,
        )

    async def renew(self, consumer: str, entry_id: str) -> bool:
        """Keep a long transcription's claim (not taken over as idle); False when it is no longer ours."""
        names = self.names
        lost = await groups.renew_claims(
            self.redis, names.recordings, names.transcribers_group, consumer, [entry_id]
        )
        return not lost

    async def waiting(self) -> int:
        """Recordings waiting or being transcribed."""
        return int(await self.redis.xlen(self.names.recordings))


def transcript_of(
    recording: RecordingMessage,
    status: str,
    *,
    transcriber: str,
    text: str = "",
    language: str = "",
    audio_s: float = 0.0,
) -> TranscriptMessage:
    """The transcript message answering ``recording`` (no audio in it)."""
    return TranscriptMessage.model_validate(
        {
            **recording.model_dump(exclude={"audio_b64", "max_seconds"}),
            "status": status,
            "text": text,
            "language": language,
            "audio_s": audio_s,
            "transcribed_at": time.time(),
            "transcriber": transcriber,
        }
    )


def voice_queue_from_settings(redis: Redis, settings: StorageSettings) -> VoiceQueue:
    """A VoiceQueue configured from the storage settings (namespace, claim time, TTL, liveness)."""
    return VoiceQueue(
        redis,
        names=VoiceNames(namespace=settings.queue_namespace),
        claim_idle_ms=settings.queue_claim_idle_ms,
        max_deliveries=settings.queue_max_deliveries,
        entry_ttl_s=settings.queue_entry_ttl_s,
        alive_s=settings.worker_down_s,
    )
