"""Groups: off until an administrator switches them on; a question waits there for its asker's consent."""

from __future__ import annotations

import structlog

from bot.flows.consent import consented
from bot.resources import Resources
from storage.queue import QuestionMessage
from storage.repositories.groups import group_enabled, set_group_enabled

log = structlog.get_logger("bot.group")


async def enabled(res: Resources, chat: str) -> bool:
    """Whether an administrator enabled the bot in the group (chat pseudonym)."""
    async with res.sessionmaker() as session:
        return await group_enabled(session, chat)


async def switch(res: Resources, chat: str, on: bool, by: str) -> None:
    """Store the group's switch, set by the administrator ``by`` (pseudonym)."""
    async with res.sessionmaker.begin() as session:
        await set_group_enabled(session, chat, on, by)
    log.info("group.switched", enabled=on)


async def hold(res: Resources, question: QuestionMessage, language: str) -> None:
    """Keep a group question until its asker consents in private (for CONSENT_HOLD_S, in Redis)."""
    await res.held.hold(question.model_copy(update={"language": language}), res.settings.consent_hold_s)
    log.info("question.held")  # bot.jobs.held drops it when its time is up


async def expire_due(res: Resources) -> list[QuestionMessage]:
    """The held questions whose time is up, taken by this process alone (released or erased: skipped)."""
    return await res.held.expire_held()


async def release(res: Resources, user: str) -> QuestionMessage | None:
    """The consented user's held group question, taken out of its hold (None if none, or no consent)."""
    if not await consented(res, user):
        return None
    return await res.held.take_held(user)
