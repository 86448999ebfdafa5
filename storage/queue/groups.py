"""Consumer-group mechanics every stream pair shares: create, read, claim, count, publish-and-ack, renew."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeAlias, TypeVar

from pydantic import BaseModel, ValidationError
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from storage.errors import BadQueueMessageError

M = TypeVar("M", bound=BaseModel)
Fields: TypeAlias = dict[
    bytes | bytearray | memoryview | str | int | float, bytes | bytearray | memoryview | str | int | float
]
Entry: TypeAlias = tuple[str, Any]

FIELD = "m"

# Publish a result once and ack and delete the entry it answers, in one step: KEYS source stream,
# target stream, published marker; ARGV group, entry id, payload, maxlen, ttl. 1 when published now.
FINISH_LUA = """
local published = 0
if redis.call('SET', KEYS[3], '1', 'NX', 'EX', ARGV[5]) then
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '*', 'm', ARGV[3])
  published = 1
end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
return published
"""

# Renew the claims a consumer still owns: KEYS stream; ARGV group, consumer, entry ids. Returns the
# ids it no longer owns (taken over, acked, or the stream is gone).
_RENEW_LUA = """
local lost = {}
for i = 3, #ARGV do
  local info = {}
  if redis.call('EXISTS', KEYS[1]) == 1 then
    info = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  end
  if #info == 1 and info[1][2] == ARGV[2] then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
  else
    table.insert(lost, ARGV[i])
  end
end
return lost
"""


@dataclass(frozen=True)
class Delivery(Generic[M]):
    """One stream entry handed to a consumer, with how often it has been delivered."""

    entry_id: str
    message: M
    deliveries: int


def encode(message: BaseModel) -> Fields:
    """A message as stream fields."""
    return {FIELD: message.model_dump_json()}


def decode(model: type[M], entry_id: str, fields: Mapping[str, str] | None) -> M:
    """Stream fields as a message, or BadQueueMessageError."""
    if not fields or FIELD not in fields:
        raise BadQueueMessageError(entry_id, "missing payload")
    try:
        return model.model_validate_json(fields[FIELD])
    except ValidationError as exc:
        raise BadQueueMessageError(entry_id, f"{exc.error_count()} schema errors") from None


async def ensure_groups(redis: Redis, pairs: Sequence[tuple[str, str]]) -> None:
    """Create each ``(stream, group)`` with its stream if it does not exist."""
    for stream, group in pairs:
        try:
            await redis.xgroup_create(stream, group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise


async def read_group(
    redis: Redis,
    stream: str,
    group: str,
    consumer: str,
    *,
    start: str,
    count: int,
    block_ms: int | None = None,
) -> list[Entry]:
    """Entries read for ``consumer`` from ``start`` (``">"`` new, ``"0"`` its unacked), deleted ones too."""
    response = await redis.xreadgroup(group, consumer, {stream: start}, count=count, block=block_ms)
    return [(entry_id, fields) for _, entries in response or [] for entry_id, fields in entries]


async def claim_idle(
    redis: Redis, stream: str, group: str, consumer: str, *, idle_ms: int, count: int
) -> list[Entry]:
    """Take over entries idle for ``idle_ms`` or more (their consumer died); deleted ones left out."""
    result = await redis.xautoclaim(stream, group, consumer, min_idle_time=idle_ms, count=count)
    return [(entry_id, fields) for entry_id, fields in result[1] if fields]


async def times_delivered(redis: Redis, stream: str, group: str, entry_id: str) -> int:
    """How often the pending entry was delivered (1 when it is not pending)."""
    info = await redis.xpending_range(stream, group, entry_id, entry_id, 1)
    return int(info[0]["times_delivered"]) if info else 1


async def ack_delete(redis: Redis, stream: str, group: str, entry_id: str) -> None:
    """Ack and delete an entry: what it carried does not linger in Redis."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.xack(stream, group, entry_id)
        pipe.xdel(stream, entry_id)
        await pipe.execute()


async def decode_or_ack(
    model: type[M], items: Sequence[Entry], ack: Callable[[str], Awaitable[None]]
) -> list[Delivery[M]]:
    """Decode entries as first deliveries; ``ack`` (drop) the malformed ones."""
    deliveries = []
    for entry_id, fields in items:
        try:
            deliveries.append(Delivery(entry_id, decode(model, entry_id, fields), 1))
        except BadQueueMessageError:
            await ack(entry_id)
    return deliveries


async def publish_and_ack(
    redis: Redis,
    *,
    source: str,
    group: str,
    entry_id: str,
    target: str,
    marker: str,
    payload: str,
    maxlen: int,
    ttl_s: int,
) -> bool:
    """Publish ``payload`` on ``target`` unless ``marker`` says it was, and ack and delete the entry."""
    script = redis.register_script(FINISH_LUA)
    args: list[str | int] = [group, entry_id, payload, maxlen, ttl_s]
    return bool(await script(keys=[source, target, marker], args=args))


async def renew_claims(
    redis: Redis, stream: str, group: str, consumer: str, entry_ids: Sequence[str]
) -> list[str]:
    """Renew ``consumer``'s claim on the entries it still owns; returns the ones it lost."""
    if not entry_ids:
        return []
    script = redis.register_script(_RENEW_LUA)
    lost = await script(keys=[stream], args=[group, consumer, *entry_ids])
    return [str(entry_id) for entry_id in lost]
