"""Follow-ups handed to the worker that answered the conversation's previous turn (its KV state).

A worker that reads a follow-up first delivered to it, whose previous turn another worker answered,
hands it over when that worker is live (its capacity key is set: only the worker itself renews it)
and holds fewer questions than its slots: the entry moves to the holder's pending list in the same
script (``XCLAIM``, delivery count unchanged) and its id goes on the holder's ``routed`` list, which
the holder reads before new entries. Otherwise it is answered where it was read, recomputed.

Nothing is lost if the holder dies after the hand-over: the entry is pending to it like any other
it held, and is taken over after the claim timeout (then never routed again, being redelivered).
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

from storage.queue.groups import Entry

# KEYS questions stream, holder's capacity key, holder's routed list; ARGV group, entry id, this
# consumer, holder, list ttl (ms). 1 when handed over; 0 when the holder is gone or full, or the
# entry is no longer this consumer's.
_ROUTE = """
local slots = tonumber(redis.call('GET', KEYS[2]) or '0') or 0
if slots < 1 then return 0 end
local held = 0
local summary = redis.call('XPENDING', KEYS[1], ARGV[1])
if summary[4] then
  for _, consumer in ipairs(summary[4]) do
    if consumer[1] == ARGV[4] then held = tonumber(consumer[2]) end
  end
end
if held >= slots then return 0 end
local entry = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)
if #entry == 0 or entry[1][2] ~= ARGV[3] then return 0 end
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[4], 0, ARGV[2], 'JUSTID')
redis.call('RPUSH', KEYS[3], ARGV[2])
redis.call('PEXPIRE', KEYS[3], ARGV[5])
return 1
"""

# KEYS questions stream, this consumer's routed list; ARGV group, consumer, count. The entries popped
# that are still pending to this consumer and not deleted, as XRANGE gives them.
_TAKE = """
local out = {}
local ids = redis.call('LPOP', KEYS[2], ARGV[3])
if not ids then return out end
for _, id in ipairs(ids) do
  local pending = redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1)
  if #pending > 0 and pending[1][2] == ARGV[2] then
    local found = redis.call('XRANGE', KEYS[1], id, id)
    if #found > 0 then table.insert(out, found[1]) end
  end
end
return out
"""


async def route(
    redis: Redis, keys: tuple[str, str, str], group: str, entry_id: str, consumer: str, holder: str,
    ttl_ms: int,
) -> bool:  # fmt: skip
    """Hand ``entry_id`` from ``consumer`` to ``holder`` if it is live and has a free slot."""
    script = redis.register_script(_ROUTE)
    return bool(await script(keys=list(keys), args=[group, entry_id, consumer, holder, max(1, ttl_ms)]))


async def take_routed(
    redis: Redis, keys: tuple[str, str], group: str, consumer: str, count: int
) -> list[Entry]:
    """Up to ``count`` entries handed to ``consumer``, oldest first (ids no longer its own left out)."""
    script = redis.register_script(_TAKE)
    found: list[Any] = await script(keys=list(keys), args=[group, consumer, count])
    return [(str(entry_id), _fields(flat)) for entry_id, flat in found]


def _fields(flat: list[Any]) -> dict[str, str]:
    """``[f1, v1, f2, v2, ...]`` as a mapping."""
    return {str(flat[i]): str(flat[i + 1]) for i in range(0, len(flat) - 1, 2)}
