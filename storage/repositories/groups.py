"""Group chats: whether an administrator has enabled the bot in a group."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import GroupChat, utcnow


async def group_enabled(session: AsyncSession, chat_pseudonym: str) -> bool:
    """Whether an administrator has enabled the bot in this group."""
    group = await session.get(GroupChat, chat_pseudonym)
    return bool(group and group.enabled)


async def set_group_enabled(session: AsyncSession, chat_pseudonym: str, enabled: bool, by: str) -> None:
    """Turn the bot on or off in a group (``by`` is the administrator's pseudonym)."""
    group = await session.get(GroupChat, chat_pseudonym)
    if group is None:
        session.add(GroupChat(chat_pseudonym=chat_pseudonym, enabled=enabled, changed_by=by))
    else:
        group.enabled, group.changed_by, group.changed_at = enabled, by, utcnow()
    await session.flush()
