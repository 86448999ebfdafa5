"""Redis Streams operations for questions and answers: the bot, the workers and `ask` use only this."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from storage import metrics
from storage.errors import BadQueueMessageError
from storage.queue import groups, routing
from storage.queue.groups import Delivery, decode, encode
from storage.queue.messages import AnswerMessage, QuestionMessage
from storage.settings import StorageSettings

FAILED_TEXT = "could not be answered"
CLAIM_TTL_S = 600  # a pending claim whose question was never enqueued expires after this

# Enqueue a question at most once (an update handled again after a crash must not ask twice):
# KEYS questions stream, pending key, enqueued marker, cancel key; ARGV payload, question id, ttl,
# maxlen. A question withdrawn before it was enqueued is not enqueued.
_ENQUEUE_ONCE = """
if redis.call('EXISTS', KEYS[4]) == 1 then
  return false
end
if not redis.call('SET', KEYS[3], '1', 'NX', 'EX', ARGV[3]) then
  return false
end
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[4], '*', 'm', ARGV[1])
redis.call('SET', KEYS[2], ARGV[2] .. ' ' .. id, 'EX', ARGV[3])
return {id, redis.call('XLEN', KEYS[1])}
"""


# Claim the user's one pending question for ARGV[1] unless another question holds it: KEYS pending
# key; ARGV question id, ttl. Returns 'new', 'again' (this question holds it) or 'other'.
_CLAIM_PENDING = """
local current = redis.call('GET', KEYS[1])
if current then
  if string.match(current, '^%S+') == ARGV[1] then return 'again' end
  return 'other'
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return 'new'
"""


@dataclass(frozen=True)
class QueueNames:
    """Stream, group and key names, all under one namespace (tests use their own)."""

    namespace: str = "meditron"
    workers_group: str = "workers"
    bots_group: str = "bots"

    @property
    def questions(self) -> str:
        """Stream of questions waiting for a worker."""
        return f"{self.namespace}:questions"

    @property
    def answers(self) -> str:
        """Stream of answers waiting for the bot."""
        return f"{self.namespace}:answers"

    @property
    def dead(self) -> str:
        """Stream of questions that could not be answered (no text kept)."""
        return f"{self.namespace}:dead"

    def cancel_key(self, question_id: str) -> str:
        """Key whose existence means the question was withdrawn."""
        return f"{self.namespace}:cancel:{question_id}"

    def pending_key(self, user: str) -> str:
        """Key holding a user's pending question as ``question_id entry_id``."""
        return f"{self.namespace}:pending:{user}"

    def answered_key(self, question_id: str) -> str:
        """Key whose existence means a worker published this question's answer (or failure notice)."""
        return f"{self.namespace}:answered:{question_id}"

    def capacity_key(self, worker: str) -> str:
        """Key holding a live worker's slots (questions it answers at once); it expires unless renewed."""
        return f"{self.namespace}:capacity:{worker}"

    def routed_key(self, worker: str) -> str:
        """List of the entries other workers handed to ``worker`` (see :mod:`storage.queue.routing`)."""
        return f"{self.namespace}:routed:{worker}"

    def sent_key(self, question_id: str) -> str:
        """Key whose existence means the answer was delivered (guards against duplicates)."""
        return f"{self.namespace}:sent:{question_id}"

    def recorded_key(self, question_id: str) -> str:
        """Key whose existence means the delivered answer was recorded in the database."""
        return f"{self.namespace}:recorded:{question_id}"

    def enqueued_key(self, question_id: str) -> str:
        """Key whose existence means the question was put on the queue (enqueue at most once)."""
        return f"{self.namespace}:enqueued:{question_id}"

    def reply_stream(self, token: str) -> str:
        """A stream of its own for the one answer a caller waits for (``ask`` on the command line)."""
        return f"{self.answers}:cli:{token}"


@dataclass(frozen=True)
class Consumer:
    """One consumer of a group: its name, unacked entries, milliseconds since it last read or
    renewed a claim, and whether that is recent enough for it to count as alive (see :class:`Queue`)."""

    name: str
    pending: int
    idle_ms: int
    alive: bool

    @property
    def idle_s(self) -> float:
        """Seconds since it last read or renewed a claim."""
        return self.idle_ms / 1000


@dataclass(frozen=True)
class Enqueued:
    """Where a new question landed: its entry id and its place in the queue (1 = next)."""

    entry_id: str
    position: int


class Queue:
    """The question/answer queue on one Redis server.

    A worker is *alive* while it read the questions stream or renewed a claim within
    ``worker_alive_s`` (WORKER_DOWN_S): a waiting worker reads every second, a busy one renews its
    claims every heartbeat. ``ask``, the admin alert and the console's health page all use this one
    definition (:meth:`workers`, :meth:`live_workers`).
    """

    def __init__(
        self,
        redis: Redis,
        *,
        names: QueueNames | None = None,
        maxlen: int = 10_000,
        claim_idle_ms: int = 120_000,
        max_deliveries: int = 3,
        entry_ttl_s: int = 86_400,
        worker_alive_s: float = 30.0,
    ) -> None:
        self.redis = redis
        self.names = names or QueueNames()
        self.maxlen = maxlen
        self.claim_idle_ms = claim_idle_ms
        self.max_deliveries = max_deliveries
        self.entry_ttl_s = entry_ttl_s
        self.worker_alive_s = worker_alive_s

    async def ensure_groups(self) -> None:
        """Create both streams and their consumer groups if they do not exist."""
        names = self.names
        await groups.ensure_groups(
            self.redis, [(names.questions, names.workers_group), (names.answers, names.bots_group)]
        )

    # -- bot side: questions in ------------------------------------------------------------

    async def enqueue(self, question: QuestionMessage) -> Enqueued:
        """Add a question and remember it as the user's pending one."""
        names = self.names
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xadd(names.questions, encode(question), maxlen=self.maxlen, approximate=True)
            pipe.xlen(names.questions)
            entry_id, length = await pipe.execute()
        metrics.QUESTIONS_ENQUEUED.inc()
        await self.redis.set(
            names.pending_key(question.user), f"{question.question_id} {entry_id}", ex=self.entry_ttl_s
        )
        return Enqueued(entry_id=str(entry_id), position=max(1, int(length)))

    async def enqueue_once(self, question: QuestionMessage) -> Enqueued | None:
        """Add a question unless it was added or withdrawn before (then None); remember it as the
        user's pending one."""
        names = self.names
        script = self.redis.register_script(_ENQUEUE_ONCE)
        keys = [
            names.questions,
            names.pending_key(question.user),
            names.enqueued_key(question.question_id),
            names.cancel_key(question.question_id),
        ]
        args: list[str | int] = [
            question.model_dump_json(),
            question.question_id,
            self.entry_ttl_s,
            self.maxlen,
        ]
        result = await script(keys=keys, args=args)
        if not result:
            return None
        metrics.QUESTIONS_ENQUEUED.inc()
        return Enqueued(entry_id=str(result[0]), position=max(1, int(result[1])))

    async def claim_pending(self, user: str, question_id: str) -> str:
        """Make ``question_id`` the user's one pending question, atomically: ``"new"``, ``"again"``
        (it already is: an update handled again) or ``"other"`` (another question is pending).

        A claim holds the question id alone, for at most CLAIM_TTL_S, until ``enqueue_once`` adds its
        entry id (and the entry TTL): a question that never gets there does not block its user long."""
        script = self.redis.register_script(_CLAIM_PENDING)
        ttl = min(self.entry_ttl_s, CLAIM_TTL_S)
        result = await script(keys=[self.names.pending_key(user)], args=[question_id, ttl])
        return str(result)

    async def pending_of(self, user: str) -> tuple[str, str] | None:
        """The user's pending ``(question_id, entry_id)``, if any."""
        value = await self.redis.get(self.names.pending_key(user))
        if not value:
            return None
        question_id, _, entry_id = str(value).partition(" ")
        return question_id, entry_id

    async def clear_pending(self, user: str, question_id: str) -> None:
        """Forget the user's pending question if it is still this one."""
        current = await self.pending_of(user)
        if current and current[0] == question_id:
            await self.redis.delete(self.names.pending_key(user))

    async def cancel(self, user: str) -> str | None:
        """Withdraw the user's pending question; returns its id, or None when there was none."""
        pending = await self.pending_of(user)
        if pending is None:
            return None
        question_id, entry_id = pending
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(self.names.cancel_key(question_id), "1", ex=self.entry_ttl_s)
            if entry_id:  # claimed, not enqueued yet: the cancel key stops it
                pipe.xdel(self.names.questions, entry_id)
            pipe.delete(self.names.pending_key(user))
            await pipe.execute()
        return question_id

    async def is_cancelled(self, question_id: str) -> bool:
        """Whether the question was withdrawn by its user."""
        return bool(await self.redis.exists(self.names.cancel_key(question_id)))

    async def waiting(self) -> int:
        """Questions in the queue, waiting or being answered."""
        return int(await self.redis.xlen(self.names.questions))

    async def dead_count(self) -> int:
        """Entries in the dead-letter stream."""
        return int(await self.redis.xlen(self.names.dead))

    async def oldest_age_s(self, now: float | None = None) -> float:
        """Age of the oldest question still queued (waiting or being answered); 0 when none."""
        entries = await self.redis.xrange(self.names.questions, count=1)
        if not entries:
            return 0.0
        added_ms = int(str(entries[0][0]).split("-", 1)[0])
        return max(0.0, (now or time.time()) - added_ms / 1000)

    async def answers_waiting(self) -> int:
        """Answers not yet delivered by the bot."""
        return int(await self.redis.xlen(self.names.answers))

    async def workers(self) -> list[Consumer]:
        """The workers group's consumers (none when the stream or group does not exist yet)."""
        try:
            consumers = await self.redis.xinfo_consumers(self.names.questions, self.names.workers_group)
        except ResponseError:  # no stream or group yet: no worker ever started
            return []
        alive_ms = self.worker_alive_s * 1000
        return [
            Consumer(str(c["name"]), int(c["pending"]), int(c["idle"]), int(c["idle"]) < alive_ms)
            for c in consumers
        ]

    async def live_workers(self) -> int:
        """Workers alive now (see :class:`Queue`)."""
        return sum(1 for worker in await self.workers() if worker.alive)

    # -- worker side -------------------------------------------------------------------------
    #
    # Exactly once: an answer is published under an ``answered`` marker set in the same script, so a
    # retried publish (its reply lost in an outage) or a second worker that took the question over
    # never adds a second answer. A heartbeat renews only the claims the worker still owns.

    _DEAD_LETTER_LUA = """
local record = {'entry_id', ARGV[2], 'reason', ARGV[5], 'at', ARGV[6]}
if ARGV[7] ~= '' then
  table.insert(record, 'question_id')
  table.insert(record, ARGV[7])
end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', unpack(record))
if ARGV[8] ~= '' and redis.call('SET', KEYS[4], '1', 'NX', 'EX', ARGV[4]) then
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[3], '*', 'm', ARGV[8])
end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
return 1
"""

    async def read_questions(
        self, consumer: str, *, count: int = 1, block_ms: int = 1_000, own_pending: bool = True
    ) -> list[Delivery[QuestionMessage]]:
        """Questions for this worker: those handed to it, its own unacked ones, stale ones of dead
        workers, then new.

        A worker that answers several questions under one name passes ``own_pending=False`` once
        it has resumed (:meth:`resume`): its unacked entries are then the ones it is answering.
        """
        sources = (self._own_pending, self._reclaim_stale) if own_pending else (self._reclaim_stale,)
        sources = (self._routed, *sources)
        for source in sources:
            found = await source(consumer, count)
            if found:
                return found
        items = await groups.read_group(
            self.redis,
            self.names.questions,
            self.names.workers_group,
            consumer,
            start=">",
            count=count,
            block_ms=block_ms,
        )
        return await self._accept([(entry_id, fields, 1) for entry_id, fields in items])

    async def resume(
        self, consumer: str, count: int, after: str = "0"
    ) -> tuple[list[Delivery[QuestionMessage]], str | None]:
        """Up to ``count`` entries this consumer took before a restart and never acked, after ``after``.

        At start-up, page by page: the second value is the entry id to resume after next, or None
        once none are left (then the entries this consumer holds are the ones it is answering).
        Each counts as one more delivery, so a question that crashes its worker every time is
        dead-lettered after ``max_deliveries``.
        """
        return await self._pending_page(consumer, count, after)

    async def _own_pending(self, consumer: str, count: int) -> list[Delivery[QuestionMessage]]:
        """Entries this consumer took before a restart and never acked."""
        deliveries, _ = await self._pending_page(consumer, count, "0")
        return deliveries

    async def _pending_page(
        self, consumer: str, count: int, after: str
    ) -> tuple[list[Delivery[QuestionMessage]], str | None]:
        """Up to ``count`` of this consumer's unacked entries after ``after`` (deleted ones left out),
        and the id to read after next (None when this page was the last)."""
        items = await groups.read_group(
            self.redis, self.names.questions, self.names.workers_group, consumer, start=after, count=count
        )
        deliveries = await self._with_counts([(i, f) for i, f in items if f])
        return deliveries, (items[-1][0] if len(items) >= count else None)

    async def route(self, delivery: Delivery[QuestionMessage], consumer: str) -> bool:
        """Hand a follow-up read by ``consumer`` to the worker that answered its previous turn, when
        that worker is live with a free slot and this is the question's first delivery (see
        :mod:`storage.queue.routing`); False: answer it here."""
        holder = delivery.message.holder
        if not holder or holder == consumer or delivery.deliveries > 1:
            return False
        names = self.names
        keys = (names.questions, names.capacity_key(holder), names.routed_key(holder))
        return await routing.route(
            self.redis, keys, names.workers_group, delivery.entry_id, consumer, holder, 2 * self.claim_idle_ms
        )

    async def _routed(self, consumer: str, count: int) -> list[Delivery[QuestionMessage]]:
        """Follow-ups other workers handed to this consumer."""
        names = self.names
        keys = (names.questions, names.routed_key(consumer))
        return await self._with_counts(
            await routing.take_routed(self.redis, keys, names.workers_group, consumer, count)
        )

    async def _reclaim_stale(self, consumer: str, count: int) -> list[Delivery[QuestionMessage]]:
        """Take over entries idle past the claim timeout (their worker died)."""
        items = await groups.claim_idle(
            self.redis,
            self.names.questions,
            self.names.workers_group,
            consumer,
            idle_ms=self.claim_idle_ms,
            count=count,
        )
        return await self._with_counts(items)

    async def _with_counts(self, items: Sequence[tuple[str, Any]]) -> list[Delivery[QuestionMessage]]:
        """Attach delivery counts from the pending-entries list."""
        names = self.names
        entries = [
            (
                entry_id,
                fields,
                await groups.times_delivered(self.redis, names.questions, names.workers_group, entry_id),
            )
            for entry_id, fields in items
        ]
        return await self._accept(entries)

    async def _accept(self, entries: Sequence[tuple[str, Any, int]]) -> list[Delivery[QuestionMessage]]:
        """Decode entries; dead-letter the malformed and the too-often delivered."""
        accepted = []
        for entry_id, fields, deliveries in entries:
            try:
                message = decode(QuestionMessage, entry_id, fields)
            except BadQueueMessageError as exc:
                await self._dead_letter(entry_id, str(exc), None)
                continue
            if deliveries > self.max_deliveries:
                await self._dead_letter(entry_id, f"delivered {deliveries} times", message)
                continue
            accepted.append(Delivery(entry_id, message, deliveries))
        return accepted

    async def _dead_letter(self, entry_id: str, reason: str, message: QuestionMessage | None) -> None:
        """Move an entry to the dead-letter stream (no text) and tell its user, unless already answered."""
        names = self.names
        notice = ""
        if message is not None:
            notice = AnswerMessage(
                question_id=message.question_id,
                chat_id=message.chat_id,
                reply_to=message.message_id,
                user=message.user,
                status="failed",
                text=FAILED_TEXT,
                language=message.language,
                received_at=message.received_at,
                enqueued_at=message.enqueued_at,
                finished_at=time.time(),
            ).model_dump_json()
        question_id = message.question_id if message is not None else ""
        script = self.redis.register_script(self._DEAD_LETTER_LUA)
        keys = [
            names.questions,
            names.dead,
            (message.reply_stream if message is not None else None) or names.answers,
            names.answered_key(question_id or f"entry-{entry_id}"),
        ]
        args: list[str | int] = [names.workers_group, entry_id, self.maxlen, self.entry_ttl_s, reason]
        await script(keys=keys, args=[*args, str(time.time()), question_id, notice])
        metrics.DEAD_LETTERS.labels("redelivered" if message is not None else "malformed").inc()

    async def heartbeat(self, consumer: str, entry_ids: Sequence[str]) -> list[str]:
        """Renew this consumer's claim on entries it still owns; returns the ones it lost.

        An entry is lost when another worker took it over (it looked idle, as after an outage
        longer than the claim timeout) or when it is no longer pending (answered, dead-lettered).
        """
        return await groups.renew_claims(
            self.redis, self.names.questions, self.names.workers_group, consumer, entry_ids
        )

    async def redeliver(
        self, delivery: Delivery[QuestionMessage], consumer: str
    ) -> Delivery[QuestionMessage] | None:
        """Count one more delivery of a question this consumer failed to answer, to try it again.

        Returns the new delivery, or None when the question is no longer this consumer's or it was
        delivered too often (then it is dead-lettered and its user told).
        """
        names = self.names
        info = await self.redis.xpending_range(
            names.questions, names.workers_group, delivery.entry_id, delivery.entry_id, 1
        )
        if not info or str(info[0]["consumer"]) != consumer:
            return None
        claimed = await self.redis.xclaim(
            names.questions, names.workers_group, consumer, min_idle_time=0, message_ids=[delivery.entry_id]
        )
        items = [(entry_id, fields) for entry_id, fields in claimed if fields]
        if not items:  # withdrawn meanwhile
            await self.drop(delivery)
            return None
        accepted = await self._with_counts(items)
        return accepted[0] if accepted else None

    async def finish(self, delivery: Delivery[QuestionMessage], answer: AnswerMessage) -> bool:
        """Publish the answer and ack the question atomically; False when it was already answered.

        Safe to call again after an error whose outcome is unknown (connection lost mid-call).
        """
        names = self.names
        return await groups.publish_and_ack(
            self.redis,
            source=names.questions,
            group=names.workers_group,
            entry_id=delivery.entry_id,
            target=delivery.message.reply_stream or names.answers,
            marker=names.answered_key(delivery.message.question_id),
            payload=answer.model_dump_json(),
            maxlen=self.maxlen,
            ttl_s=self.entry_ttl_s,
        )

    _PART_LUA = """
if redis.call('EXISTS', KEYS[3]) == 1 or not redis.call('SET', KEYS[4], '1', 'NX', 'EX', ARGV[3]) then
  return 0
end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', 'm', ARGV[1])
return 1
"""

    async def publish_part(self, question: QuestionMessage, part: AnswerMessage) -> bool:
        """Publish an early paragraph of an answer still being written, once (the question stays claimed).

        False when this part was published before (a retried or reclaimed generation) or the answer
        is already final.
        """
        names = self.names
        script = self.redis.register_script(self._PART_LUA)
        keys = [
            names.questions,
            question.reply_stream or names.answers,
            names.answered_key(question.question_id),
            names.answered_key(f"{question.question_id}#{part.part}"),
        ]
        args: list[str | int] = [part.model_dump_json(), self.maxlen, self.entry_ttl_s]
        return bool(await script(keys=keys, args=args))

    async def drop(self, delivery: Delivery[QuestionMessage]) -> None:
        """Ack and delete a question that needs no answer (withdrawn)."""
        await groups.ack_delete(self.redis, self.names.questions, self.names.workers_group, delivery.entry_id)

    async def advertise(self, worker: str, slots: int, ttl_s: float) -> None:
        """Announce that ``worker`` answers ``slots`` questions at once, for the next ``ttl_s``."""
        await self.redis.set(self.names.capacity_key(worker), str(slots), px=max(1, int(ttl_s * 1000)))

    async def withdraw(self, worker: str) -> None:
        """Forget ``worker``'s capacity (it stops)."""
        await self.redis.delete(self.names.capacity_key(worker))

    async def capacity(self) -> int:
        """Questions the live workers answer at once: the sum of their announced slots (0 when none)."""
        pattern = self.names.capacity_key("*")
        keys = [key async for key in self.redis.scan_iter(match=pattern, count=500)]
        values = await self.redis.mget(keys) if keys else []
        return sum(int(value) for value in values if value and str(value).isdigit())

    # -- one answer waited for (``ask``) -----------------------------------------------------

    async def ask(self, question: QuestionMessage, timeout_s: float) -> AnswerMessage | None:
        """Enqueue ``question`` with a reply stream of its own and wait for its answer.

        None when no answer came within ``timeout_s``; the reply stream is deleted either way.
        """
        reply = self.names.reply_stream(uuid.uuid4().hex)
        await self.enqueue(question.model_copy(update={"reply_stream": reply}))
        try:
            return await self._wait_reply(reply, timeout_s)
        finally:
            await self.redis.delete(reply)

    async def _wait_reply(self, stream: str, timeout_s: float) -> AnswerMessage | None:
        """Block on ``stream`` until its first entry arrives or ``timeout_s`` passes."""
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            block_ms = max(1, int(min(left, 5.0) * 1000))
            response = await self.redis.xread({stream: "0"}, count=1, block=block_ms)
            for _, entries in response or []:
                for entry_id, fields in entries:
                    return decode(AnswerMessage, entry_id, fields)
        return None

    # -- bot side: answers out -------------------------------------------------------------

    async def read_answers(
        self, consumer: str, *, count: int = 10, block_ms: int = 1_000, pending: bool = False
    ) -> list[Delivery[AnswerMessage]]:
        """Answers to deliver: with ``pending`` the ones this consumer has not acked yet."""
        items = await groups.read_group(
            self.redis,
            self.names.answers,
            self.names.bots_group,
            consumer,
            start="0" if pending else ">",
            count=count,
            block_ms=None if pending else block_ms,
        )
        return await groups.decode_or_ack(AnswerMessage, items, self.ack_answer)

    async def reclaim_answers(self, consumer: str, *, count: int = 10) -> list[Delivery[AnswerMessage]]:
        """Take over answers another bot process read but never delivered."""
        items = await groups.claim_idle(
            self.redis,
            self.names.answers,
            self.names.bots_group,
            consumer,
            idle_ms=self.claim_idle_ms,
            count=count,
        )
        return [Delivery(entry_id, decode(AnswerMessage, entry_id, fields), 2) for entry_id, fields in items]

    async def was_sent(self, question_id: str) -> bool:
        """Whether this answer was already delivered."""
        return bool(await self.redis.exists(self.names.sent_key(question_id)))

    async def mark_sent(self, question_id: str, message_id: int | None = None) -> None:
        """Remember that this answer (or its piece ``<question id>#<n>``) was delivered, as ``message_id``."""
        value = f"message:{message_id}" if message_id is not None else "1"
        await self.redis.set(self.names.sent_key(question_id), value, ex=self.entry_ttl_s)

    async def sent_message(self, question_id: str) -> int | None:
        """The Telegram message a delivered piece was sent as (None: not sent, or not said)."""
        value = await self.redis.get(self.names.sent_key(question_id))
        text = str(value or "")
        return int(text.removeprefix("message:")) if text.startswith("message:") else None

    async def was_recorded(self, question_id: str) -> bool:
        """Whether this delivered answer was already recorded in the database."""
        return bool(await self.redis.exists(self.names.recorded_key(question_id)))

    async def mark_recorded(self, question_id: str) -> None:
        """Remember that this answer was recorded (it may have been sent long before)."""
        await self.redis.set(self.names.recorded_key(question_id), "1", ex=self.entry_ttl_s)

    async def ack_answer(self, entry_id: str) -> None:
        """Ack and delete a delivered answer: no text lingers in Redis."""
        await groups.ack_delete(self.redis, self.names.answers, self.names.bots_group, entry_id)

    async def trim(self, now: float | None = None) -> None:
        """Drop stream entries older than the entry TTL."""
        cutoff_ms = int(((now or time.time()) - self.entry_ttl_s) * 1000)
        for stream in (self.names.questions, self.names.answers, self.names.dead):
            await self.redis.xtrim(stream, minid=f"{cutoff_ms}-0", approximate=False)


def queue_from_settings(redis: Redis, settings: StorageSettings) -> Queue:
    """A Queue configured from the storage settings."""
    return Queue(
        redis,
        names=QueueNames(namespace=settings.queue_namespace),
        maxlen=settings.queue_maxlen,
        claim_idle_ms=settings.queue_claim_idle_ms,
        max_deliveries=settings.queue_max_deliveries,
        entry_ttl_s=settings.queue_entry_ttl_s,
        worker_alive_s=settings.worker_down_s,
    )
