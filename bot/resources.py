"""What handlers and flows need, built once in ``post_init`` and reached as ``context.resources``.

Nothing here is state another bot process would need: rate counters, held questions, typing chats,
answer times, languages and grants live in Redis or the database. What is kept is this process's
own work: its consumer name and the acknowledgements it is sending now.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.consent_texts import ConsentText
from bot.jobs.lease import Leases
from bot.progress import AnswerProgress
from bot.settings import BotSettings
from storage.pseudonym import Pseudonymizer
from storage.queue import Queue
from storage.queue.cases import CaseQueue
from storage.queue.conversations import ConversationStore
from storage.queue.updates import UpdateLog
from storage.queue.voice import VoiceNames, VoiceQueue
from storage.transient.held import HeldQuestions
from storage.transient.languages import PendingLanguages
from storage.transient.prompts import ReasonPrompts
from storage.transient.rates import RateCounter

KEY = "resources"


def consumer_name(prefix: str) -> str:
    """A consumer name no other bot process has: ``prefix-host-pid-random`` (a restart gets a new one)."""
    return f"{prefix}-{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


@dataclass
class Resources:
    """Settings, database, queue and pseudonymizer for one running bot."""

    settings: BotSettings
    sessionmaker: async_sessionmaker[AsyncSession]
    queue: Queue
    pseudonyms: Pseudonymizer
    consent: ConsentText
    updates: UpdateLog
    consumer: str = ""  # this process in the update log's and the answers' consumer groups
    acknowledgements: dict[str, asyncio.Task[None]] = field(
        default_factory=dict
    )  # question id -> not sent yet (tasks of this process)

    def __post_init__(self) -> None:
        if not self.consumer:
            self.consumer = consumer_name(self.settings.bot_consumer)

    @property
    def rates(self) -> RateCounter:
        """Message counters for the rate limits (in Redis)."""
        return RateCounter(self.queue.redis, self.queue.names.namespace)

    @property
    def held(self) -> HeldQuestions:
        """Group questions waiting for their asker's consent (in Redis)."""
        return HeldQuestions(self.queue.redis, self.queue.names.namespace)

    @property
    def prompts(self) -> ReasonPrompts:
        """Feedback-reason prompts (in Redis)."""
        return ReasonPrompts(self.queue.redis, self.queue.names.namespace)

    @property
    def pending_languages(self) -> PendingLanguages:
        """Languages chosen before any consent choice (in Redis)."""
        return PendingLanguages(self.queue.redis, self.queue.names.namespace)

    @property
    def progress(self) -> AnswerProgress:
        """Typing chats and recent answer times (in Redis)."""
        return AnswerProgress(self.queue.redis, self.queue.names.namespace, self.settings.typing_max_s)

    @property
    def cases(self) -> CaseQueue:
        """Handover offers, reply routes and the clinicians' replies stream (in Redis)."""
        return CaseQueue(self.queue, offer_ttl_s=int(self.settings.handover_offer_h * 3600))

    @property
    def voice(self) -> VoiceQueue:
        """The recordings and transcripts streams (voice notes), on the queue's Redis and namespace."""
        queue = self.queue
        return VoiceQueue(
            queue.redis, names=VoiceNames(queue.names.namespace), claim_idle_ms=queue.claim_idle_ms,
            max_deliveries=queue.max_deliveries, entry_ttl_s=queue.entry_ttl_s, alive_s=queue.worker_alive_s,
        )  # fmt: skip

    @property
    def conversations(self) -> ConversationStore:
        """Conversation memory (in Redis, expiring after CONVERSATION_IDLE_MIN)."""
        return ConversationStore(
            self.queue.redis, self.queue.names.namespace,
            idle_s=self.settings.conversation_idle_min * 60, max_turns=self.settings.conversation_turns,
        )  # fmt: skip

    @property
    def leases(self) -> Leases:
        """Once-per-deployment leases of the periodic jobs (in Redis)."""
        return Leases(self.queue.redis, self.queue.names.namespace, self.consumer)


def get(bot_data: dict[Any, Any]) -> Resources:
    """The resources stored in ``bot_data`` by ``post_init``."""
    resources = bot_data[KEY]
    assert isinstance(resources, Resources)
    return resources
