"""The bot's start-up audit: record configuration and consent-text changes since its last start."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.consent_texts import available, current_revision
from bot.settings import BotSettings
from storage.repositories.startup_audit import audit_startup, settings_snapshot
from storage.settings import StorageSettings


async def audit_bot_start(
    sessionmaker: async_sessionmaker[AsyncSession], settings: BotSettings, storage: StorageSettings
) -> list[str]:
    """Append ``config.changed`` when the bot's settings or consent texts differ from last time."""
    config = settings_snapshot(settings, storage)
    config["consent_revision"] = current_revision()
    config["consent_texts"] = ",".join(sorted(available()))
    async with sessionmaker.begin() as session:
        return await audit_startup(session, "bot", config)
