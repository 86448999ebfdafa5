"""What handlers need, built once in ``post_init`` and reached through ``context.bot_data``."""

from __future__ import annotations

import asyncio
import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.consent_texts import ConsentText
from bot.fieldstate import FieldState
from bot.settings import BotSettings
from storage.pseudonym import Pseudonymizer
from storage.queue import Queue
from storage.queue.updates import UpdateLog

KEY = "resources"


@dataclass
class Resources:
    """Settings, database, queue and pseudonymizer for one running bot."""

    settings: BotSettings
    sessionmaker: async_sessionmaker[AsyncSession]
    queue: Queue
    pseudonyms: Pseudonymizer
    consent: ConsentText
    updates: UpdateLog
    typing_chats: dict[int, float] = field(default_factory=dict)
    acknowledgements: dict[str, asyncio.Task[None]] = field(
        default_factory=dict
    )  # question id -> not sent yet
    languages: dict[str, str] = field(default_factory=dict)  # pseudonym -> chosen language
    granted: set[str] = field(default_factory=set)  # pseudonyms let in by an invite (cache)
    service_times: deque[float] = field(default_factory=lambda: deque(maxlen=20))  # seconds per answer

    @property
    def state(self) -> FieldState:
        """Rate counters, held group questions and feedback prompts (in Redis)."""
        return FieldState(self.queue.redis, self.queue.names.namespace)

    def estimated_wait_s(self, position: int, slots: int = 1) -> float | None:
        """Seconds until the answer at ``position``, from recent answer times (None without data).

        Questions are answered ``slots`` at a time (all workers' MAX_SEQUENCES together), so the
        question at ``position`` waits for ``ceil(position / slots) - 1`` rounds before its own.
        """
        if not self.service_times:
            return None
        rounds = math.ceil(position / max(1, slots))
        return rounds * sum(self.service_times) / len(self.service_times)


def get(bot_data: dict[Any, Any]) -> Resources:
    """The resources stored in ``bot_data`` by ``post_init``."""
    resources = bot_data[KEY]
    assert isinstance(resources, Resources)
    return resources
