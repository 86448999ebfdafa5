"""Who may use the bot: message rate limits, allowlists, invites and the grants they give."""

from __future__ import annotations

from dataclasses import dataclass

import structlog

from bot.resources import Resources
from storage.repositories.grants import has_grant
from storage.repositories.invites import redeem_invite

log = structlog.get_logger("bot.access")


@dataclass(frozen=True)
class Rate:
    """The rate-limit verdict on one message."""

    over_user: bool
    over_group: bool
    first_over: bool  # the sender's first message over their limit: the one that gets a reply

    @property
    def limited(self) -> bool:
        """Whether the message is dropped."""
        return self.over_user or self.over_group


async def rate(res: Resources, user: str, group: str | None) -> Rate:
    """Count a message of ``user`` (pseudonym) in ``group`` (chat pseudonym, None in private)."""
    user_count = await res.rates.hit(user)
    over_user = user_count > res.settings.user_messages_per_minute
    over_group = False
    if group is not None:
        over_group = await res.rates.hit(group) > res.settings.group_messages_per_minute
    first = over_user and user_count == res.settings.user_messages_per_minute + 1
    return Rate(over_user, over_group, first)


async def allowed(
    res: Resources, *, chat_id: int | None, private: bool, user_id: int | None, redeeming: bool
) -> bool:
    """Allowlisted user or group, an invite holder, or someone redeeming an invite (Telegram ids)."""
    if chat_id is not None and chat_id in (res.settings.admin_chat_id, res.settings.oncall_chat_id):
        return True
    if chat_id is not None and not private:
        return chat_id in res.settings.allowed_chat_ids
    if user_id is None or user_id in res.settings.allowed_user_ids:
        return user_id is not None
    if redeeming:
        return True  # an invite code is being redeemed
    return await granted(res, res.pseudonyms.user(user_id))


async def granted(res: Resources, pseudonym: str) -> bool:
    """Whether the user redeemed an invite (asked of the database every time: a /forget handled by
    another bot process takes the grant away at once)."""
    async with res.sessionmaker() as session:
        return await has_grant(session, pseudonym)


async def redeem(res: Resources, pseudonym: str, code: str) -> bool:
    """Redeem an invite code for the user; whether it was accepted."""
    async with res.sessionmaker.begin() as session:
        accepted = await redeem_invite(session, code, pseudonym)
    log.info("invite.redeemed" if accepted else "invite.rejected")
    return accepted
