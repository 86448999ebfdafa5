"""Which bot processes are alive, and taking over the work of one that is not.

Each process renews ``<namespace>:bot-alive:<consumer>`` every BEAT_S (it expires after three
beats) and deletes it when it stops. A consumer of the update log, the answers, the transcripts or
the clinicians' replies without that key belongs to a process that died (or stopped with updates
left to retry): the next beat of any live process takes over its unacked entries and deletes it,
and that process handles them at once. The consumer names are per process
(``resources.consumer_name``): no Telegram id.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError
from telegram.ext import JobQueue

from bot.resources import Resources
from bot.telegram.context import BotContext
from storage.queue.consumers import consumer_names, take_over
from storage.queue.updates import GROUP as UPDATES_GROUP

log = structlog.get_logger("bot.liveness")

BEAT_S = 2.0
JOB_NAME = "liveness"
EXPIRES_AFTER_BEATS = 3


@dataclass
class Liveness:
    """This process's heartbeat, and the groups whose gone consumers it takes over."""

    redis: Redis
    namespace: str
    consumer: str
    groups: list[tuple[str, str]]  # (stream, group) pairs this process consumes
    on_taken: list[Callable[[], None]] = field(default_factory=list)  # re-read own pending entries

    def key(self, consumer: str) -> str:
        """The key that says ``consumer``'s process is alive."""
        return f"{self.namespace}:bot-alive:{consumer}"

    async def beat(self) -> int:
        """Say this process is alive; take over gone consumers; returns how many entries it took."""
        await self.redis.set(self.key(self.consumer), "1", px=int(BEAT_S * EXPIRES_AFTER_BEATS * 1000))
        taken = 0
        for stream, group in self.groups:
            for name in await consumer_names(self.redis, stream, group):
                if name == self.consumer or await self.redis.exists(self.key(name)):
                    continue
                moved = await take_over(self.redis, stream, group, name, self.consumer)
                log.info("consumer.taken_over", group=group, entries=moved)
                taken += moved
        if taken:
            for notify in self.on_taken:
                notify()
        return taken

    async def stop(self) -> None:
        """This process stops: others may take over what it leaves unacked."""
        await self.redis.delete(self.key(self.consumer))


async def start_liveness(
    job_queue: JobQueue[Any], res: Resources, on_taken: list[Callable[[], None]]
) -> Liveness:
    """Beat once now (before this process reads anything), then every BEAT_S."""
    liveness = Liveness(
        res.queue.redis,
        res.queue.names.namespace,
        res.consumer,
        [
            (res.updates.stream, UPDATES_GROUP),
            (res.queue.names.answers, res.queue.names.bots_group),
            (res.voice.names.transcripts, res.voice.names.bots_group),
            (res.cases.replies, res.cases.group),
        ],
        on_taken,
    )
    await liveness.beat()
    job_queue.run_repeating(_beat, interval=BEAT_S, first=BEAT_S, name=JOB_NAME, data=liveness)
    return liveness


async def _beat(context: BotContext) -> None:
    """One heartbeat (a passing Redis outage only skips it)."""
    assert context.job is not None
    liveness = context.job.data
    assert isinstance(liveness, Liveness)
    try:
        await liveness.beat()
    except (RedisError, OSError) as exc:
        log.warning("liveness.beat_failed", error=type(exc).__name__)


async def stop_liveness(liveness: Liveness | None) -> None:
    """Delete this process's heartbeat (if it started one); a Redis already gone is ignored."""
    if liveness is not None:
        with contextlib.suppress(RedisError, OSError):
            await liveness.stop()
