"""The durable log of raw Telegram updates: stored (deduplicated on update_id) before Telegram's offset
moves past them, handled from there, and deleted once handled.

An update is a JSON object exactly as the Bot API sent it. It is parsed only by the consumer, so one
update that python-telegram-bot cannot parse never holds back the others of its batch.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

FIELD = "u"
GROUP = "handlers"

# Store each update once: a marker per update_id (kept for a day, longer than Telegram keeps updates)
# decides, in the same atomic step, whether the update is appended to the stream.
_STORE = """
local stored = 0
for i = 1, #ARGV, 2 do
  if redis.call('SET', KEYS[2] .. ARGV[i], '1', 'NX', 'EX', 86400) then
    redis.call('XADD', KEYS[1], '*', 'id', ARGV[i], 'u', ARGV[i + 1])
    stored = stored + 1
  end
end
return stored
"""


@dataclass(frozen=True)
class StoredUpdate:
    """One raw update taken from the log: its entry, update_id, payload and delivery count."""

    entry_id: str
    update_id: int | None
    payload: dict[str, Any] | None
    deliveries: int


def update_id_of(raw: object) -> int | None:
    """The update_id of a raw update, or None when it has none (such an update cannot be stored)."""
    if isinstance(raw, dict):
        value = raw.get("update_id")
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


class UpdateLog:
    """Raw updates in the stream ``<namespace>:updates``, read by the bots' consumer group."""

    def __init__(self, redis: Redis, namespace: str) -> None:
        self.redis = redis
        self.stream = f"{namespace}:updates"
        self.seen_prefix = f"{namespace}:update-seen:"
        self.once_prefix = f"{namespace}:once:"
        self._store = redis.register_script(_STORE)

    async def ensure_group(self) -> None:
        """Create the stream and its consumer group if they do not exist."""
        try:
            await self.redis.xgroup_create(self.stream, GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def store(self, updates: Sequence[dict[str, Any]]) -> int:
        """Append the updates not stored before (one atomic step); returns how many were new."""
        args: list[str | int] = []
        for raw in updates:
            update_id = update_id_of(raw)
            if update_id is not None:
                # ASCII JSON: a lone surrogate (half an emoji) in a text is escaped, not unencodable.
                args += [update_id, json.dumps(raw, separators=(",", ":"))]
        if not args:
            return 0
        return int(await self._store(keys=[self.stream, self.seen_prefix], args=args))

    async def read(
        self,
        consumer: str,
        *,
        pending: bool,
        count: int = 32,
        block_ms: int = 1_000,
        skip: frozenset[str] = frozenset(),
    ) -> list[StoredUpdate]:
        """New updates, or with ``pending`` those this consumer took and never acked (minus ``skip``)."""
        response = await self.redis.xreadgroup(
            GROUP,
            consumer,
            {self.stream: "0" if pending else ">"},
            count=count,
            block=None if pending else block_ms,
        )
        items = [(i, f) for _, entries in response or [] for i, f in entries if i not in skip]
        if not pending:
            return [_stored(i, f, 1) for i, f in items]
        return [_stored(i, f, await self._deliveries(i)) for i, f in items]

    async def reclaim(self, consumer: str, min_idle_ms: int, count: int = 32) -> list[StoredUpdate]:
        """Take over updates another bot process took and did not handle within ``min_idle_ms``."""
        result = await self.redis.xautoclaim(
            self.stream, GROUP, consumer, min_idle_time=min_idle_ms, count=count
        )
        return [_stored(i, f, await self._deliveries(i)) for i, f in result[1]]

    async def _deliveries(self, entry_id: str) -> int:
        """How often the entry was handed out (from the pending-entries list)."""
        info = await self.redis.xpending_range(self.stream, GROUP, entry_id, entry_id, 1)
        return int(info[0]["times_delivered"]) if info else 1

    async def ack(self, entry_id: str) -> None:
        """The update is handled: ack it and delete it (no text lingers in Redis)."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xack(self.stream, GROUP, entry_id)
            pipe.xdel(self.stream, entry_id)
            await pipe.execute()

    async def backlog(self) -> int:
        """Updates stored and not yet handled."""
        return int(await self.redis.xlen(self.stream))

    async def once(self, key: str, ttl_s: int = 86_400) -> bool:
        """True the first time ``key`` is claimed (for replies that must go out at most once)."""
        return bool(await self.redis.set(self.once_prefix + key, "1", nx=True, ex=ttl_s))


def _stored(entry_id: str, fields: dict[str, str] | None, deliveries: int) -> StoredUpdate:
    """A stream entry as a StoredUpdate (payload None when it is not a JSON object)."""
    fields = fields or {}
    try:
        update_id: int | None = int(fields.get("id", ""))
    except ValueError:
        update_id = None
    try:
        payload = json.loads(fields.get(FIELD, ""))
    except ValueError:
        payload = None
    return StoredUpdate(entry_id, update_id, payload if isinstance(payload, dict) else None, deliveries)
