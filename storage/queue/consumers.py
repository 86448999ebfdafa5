"""Consumers of a stream's group: who they are, and taking over a gone one's unacked entries."""

from __future__ import annotations

from redis.asyncio import Redis
from redis.exceptions import ResponseError

# Move every entry pending for consumer ARGV[2] to ARGV[3], then delete ARGV[2], in one step (a
# consumer deleted with entries would drop them from the group's pending list). KEYS stream;
# ARGV group, gone consumer, new owner. Returns how many entries moved.
_TAKE_OVER = """
local taken = 0
while true do
  local pending = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 100, ARGV[2])
  if #pending == 0 then break end
  local ids = {}
  for i, entry in ipairs(pending) do ids[i] = entry[1] end
  redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[3], 0, unpack(ids))
  taken = taken + #ids
end
redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
return taken
"""


async def consumer_names(redis: Redis, stream: str, group: str) -> list[str]:
    """The names of the group's consumers (none when the stream or group does not exist yet)."""
    try:
        consumers = await redis.xinfo_consumers(stream, group)
    except ResponseError:
        return []
    return [str(consumer["name"]) for consumer in consumers]


async def take_over(redis: Redis, stream: str, group: str, gone: str, consumer: str) -> int:
    """Make ``consumer`` the owner of everything ``gone`` took and never acked; delete ``gone``."""
    script = redis.register_script(_TAKE_OVER)
    return int(await script(keys=[stream], args=[group, gone, consumer]))
