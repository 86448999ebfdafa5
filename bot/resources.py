"""What handlers need, built once in ``post_init`` and reached through ``context.bot_data``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.consent import ConsentText
from bot.settings import BotSettings
from storage.pseudonym import Pseudonymizer
from storage.queue import Queue

KEY = "resources"


@dataclass
class Resources:
    """Settings, database, queue and pseudonymizer for one running bot."""

    settings: BotSettings
    sessionmaker: async_sessionmaker[AsyncSession]
    queue: Queue
    pseudonyms: Pseudonymizer
    consent: ConsentText
    typing_chats: dict[int, float] = field(default_factory=dict)


def get(bot_data: dict[Any, Any]) -> Resources:
    """The resources stored in ``bot_data`` by ``post_init``."""
    resources = bot_data[KEY]
    assert isinstance(resources, Resources)
    return resources
