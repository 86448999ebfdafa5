"""Handle transcripts from the transcripts stream: say what was heard, then treat it as a typed question.

Each transcript is handled once per bot deployment (any bot process may take it) and deleted from
Redis as soon as it is handled: its text then lives on only as the queued question (and, with research
consent, in the database like any question text).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import structlog
from telegram.error import TelegramError
from telegram.ext import ExtBot

from bot.flows import consent
from bot.flows import voice as flow
from bot.resources import Resources
from bot.telegram import texts
from bot.telegram.cleaning import clean
from bot.telegram.i18n import t
from bot.telegram.questions import queue_question, reply, warn_if_danger
from bot.telegram.stream_loop import StreamLoop, cancel_task
from storage.queue import Delivery, QuestionMessage
from storage.queue.voice_messages import TranscriptMessage

log = structlog.get_logger("bot.voice")


class TranscriptDelivery(StreamLoop[TranscriptMessage]):
    """Reads the transcripts stream in the bots' group and handles each transcript once."""

    name = "transcript-delivery"

    def __init__(self, bot: ExtBot[Any], res: Resources) -> None:
        super().__init__(bot, res)
        # Called after each transcript is handled: the hygiene job's rewrite of Redis's append-only
        # file, so the audio, deleted from the stream, leaves the disk within seconds too.
        self.after_handled: Callable[[], Awaitable[bool]] | None = None
        self._rewrite: asyncio.Task[bool] | None = None

    async def stop(self) -> None:
        """Stop the loop and a rewrite in progress; unhandled transcripts stay pending in Redis."""
        await super().stop()
        await cancel_task(self._rewrite)

    async def _prepare(self) -> None:
        await self.res.voice.ensure_groups()

    async def _read(self, pending: bool) -> Sequence[Delivery[TranscriptMessage]]:
        return await self.res.voice.read_transcripts(self.res.consumer, pending=pending, block_ms=1_000)

    async def _handle(self, delivery: Delivery[TranscriptMessage]) -> None:
        await self.handle(delivery)

    async def handle(self, delivery: Delivery[TranscriptMessage]) -> None:
        """Say what was heard (or why nothing was), then the question's usual path; ack at the end."""
        transcript, res = delivery.message, self.res
        language = flow.answer_language(transcript)
        question = flow.question_of(transcript, clean(transcript.text).text.strip(), language, time.time())
        with structlog.contextvars.bound_contextvars(
            question_id=transcript.question_id, update_id=transcript.update_id
        ):
            refusal = flow.transcript_refusal(transcript, res.settings)
            if refusal is not None:
                log.info("voice.not_understood", status=transcript.status)
                await res.progress.stop_typing(transcript.chat_id)
                await self._once(
                    question,
                    "refused",
                    t(texts.VOICE_REFUSALS[refusal.kind], language).format(**refusal.fields),
                )
            else:
                await self._ask(question, language)
            await res.voice.ack_transcript(delivery.entry_id)
        if self.after_handled is not None and (self._rewrite is None or self._rewrite.done()):
            self._rewrite = asyncio.create_task(self._after(self.after_handled))

    @staticmethod
    async def _after(action: Callable[[], Awaitable[bool]]) -> bool:
        """Run ``action`` in the background; a failure is logged (the periodic job catches up)."""
        try:
            done = await action()
        except Exception as exc:
            log.warning("voice.aof_rewrite_failed", error=type(exc).__name__)
            return False
        if done:
            log.info("voice.aof_rewritten")
        return done

    async def _ask(self, question: QuestionMessage, language: str) -> None:
        """The heard text, then: danger signs, consent (asked again: it may have changed), the queue."""
        res = self.res
        received = round(time.time() - question.received_at, 3) if question.received_at else None
        log.info("voice.heard", chars=len(question.text), since_received_s=received)
        await self._once(question, "heard", t(texts.VOICE_HEARD, language).format(text=question.text))
        if len(question.text) > res.settings.max_question_chars:
            limit = res.settings.max_question_chars
            await self._once(
                question, "long", t(texts.TOO_LONG, language).format(length=len(question.text), limit=limit)
            )
            return
        flag = (
            await warn_if_danger(self.bot, res, question, language)
            if await self._first(question, "flag")
            else None
        )
        if not await consent.consented(res, question.user):
            await res.progress.stop_typing(question.chat_id)
            await self._once(question, "consent", t(texts.CONSENT_FIRST, language))
            return
        await queue_question(self.bot, res, question, language, urgent=flag is not None)

    async def _first(self, question: QuestionMessage, step: str) -> bool:
        """True the first time this step runs for this voice note (handled again: nothing repeats)."""
        return await self.res.updates.once(f"voice-{step}:{question.question_id}")

    async def _once(self, question: QuestionMessage, step: str, text: str) -> None:
        """Reply ``text`` to the voice note, at most once per step; a chat that is gone loses nothing."""
        if not await self._first(question, step):
            return
        try:
            await reply(self.bot, question, text)
        except TelegramError as exc:
            log.warning("voice.reply_failed", error=type(exc).__name__)
