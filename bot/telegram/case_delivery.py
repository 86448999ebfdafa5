"""Deliver clinicians' replies from their stream to Telegram, like answers: retried, never sent twice."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import structlog
from telegram.ext import ExtBot

from bot.resources import Resources
from bot.telegram.delivery import send_until_accepted
from bot.telegram.keyboards import case_rating_keyboard
from bot.telegram.stream_loop import StreamLoop
from storage.queue import Delivery
from storage.queue.cases import CaseReplyMessage
from storage.repositories.cases import close_case, reply_committed

log = structlog.get_logger("bot.case_delivery")


class CaseDelivery(StreamLoop[CaseReplyMessage]):
    """Reads the replies stream in the bots' group; sends each reply once, closes its case, acks it."""

    name = "case-delivery"

    def __init__(self, bot: ExtBot[Any], res: Resources) -> None:
        super().__init__(bot, res)
        self.handled = 0  # replies delivered (or found undeliverable) and acked since start
        self._changed = asyncio.Condition()

    async def _read(self, pending: bool) -> Sequence[Delivery[CaseReplyMessage]]:
        cases = self.res.cases
        await cases.ensure_group()  # each time: the replies stream may have gone with its last entry
        return await cases.read(self.res.consumer, pending=pending, block_ms=1_000)

    async def _handle(self, delivery: Delivery[CaseReplyMessage]) -> None:
        await self.deliver(delivery)

    async def deliver(self, delivery: Delivery[CaseReplyMessage]) -> None:
        """Send one reply as a reply to the question (unless sent before), close the case, ack."""
        reply, cases = delivery.message, self.res.cases
        with structlog.contextvars.bound_contextvars(question_id=reply.question_id, case_id=reply.case_id):
            delivered = True
            sent_before = await cases.was_sent(reply.case_id)
            if not sent_before and not await self._committed(reply.case_id):
                log.info("case.reply_dropped", reason="not_committed")  # the console rolled it back
                await self._acked(delivery)
                return
            if not sent_before:
                route = await cases.route(reply.question_id)  # None: erased (/forget) meanwhile
                markup = case_rating_keyboard(reply.case_id)
                sent = None
                if route is not None:
                    sent = await send_until_accepted(self.bot, route[0], reply.text, route[1], markup)
                delivered = sent is not None
                if delivered:
                    await cases.mark_sent(reply.case_id)
            async with self.res.sessionmaker.begin() as session:
                await close_case(session, reply.case_id, delivered=delivered)
            log.info("case.delivered", delivered=delivered)
            await self._acked(delivery)

    async def _committed(self, case_id: int) -> bool:
        """The console's transaction that stored the reply committed (waits for it to end)."""
        async with self.res.sessionmaker.begin() as session:
            return await reply_committed(session, case_id)

    async def _acked(self, delivery: Delivery[CaseReplyMessage]) -> None:
        """Ack the entry and count it handled."""
        await self.res.cases.ack(delivery.entry_id)
        async with self._changed:
            self.handled += 1
            self._changed.notify_all()

    async def wait_delivered(self, count: int, timeout: float = 30.0) -> None:
        """Wait until ``count`` replies were handled since start (for callers that must know)."""
        async with self._changed, asyncio.timeout(timeout):
            await self._changed.wait_for(lambda: self.handled >= count)
