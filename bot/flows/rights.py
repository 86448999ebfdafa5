"""The user's rights: see what they agreed to, withdraw from research, be forgotten."""

from __future__ import annotations

from dataclasses import dataclass

import structlog

from bot.consent_texts import is_current
from bot.flows import language
from bot.flows.consent import withdraw_scope
from bot.flows.conversation import forget_conversations
from bot.resources import Resources
from storage.models import ConsentEvent
from storage.repositories.consent import latest_consents
from storage.repositories.erasure import erase_research_text, forget_user
from storage.repositories.users import get_user

log = structlog.get_logger("bot.rights")


@dataclass(frozen=True)
class ConsentStatus:
    """What the user agreed to: the text version (None: never chose) and the latest event per scope."""

    version: str | None
    latest: dict[str, ConsentEvent]

    @property
    def outdated(self) -> bool:
        """Whether the user agreed to a text older than the current revision (asked again)."""
        return bool(self.version) and not is_current(self.version)


@dataclass(frozen=True)
class Erased:
    """What an erasure removed: questions whose text went, and whether a held question went too."""

    questions: int
    held: bool


async def status(res: Resources, pseudonym: str) -> ConsentStatus:
    """The user's consent state, for /consent."""
    async with res.sessionmaker.begin() as session:
        user = await get_user(session, pseudonym)
        latest = await latest_consents(session, user.id) if user is not None else {}
        return ConsentStatus(user.consent_text_version if user else None, latest)


async def privacy_choice(res: Resources, pseudonym: str) -> str:
    """``none``, ``service`` or ``both``: what the user agreed to, for /privacy."""
    async with res.sessionmaker.begin() as session:
        user = await get_user(session, pseudonym)
        if user is None or not user.service_consent:
            return "none"
        return "both" if user.research_consent else "service"


async def withdraw(res: Resources, pseudonym: str, language_code: str) -> Erased:
    """Withdraw research consent, erase the user's kept texts and held question."""
    held = await res.held.drop_held(pseudonym)
    await res.cases.forget_offers(pseudonym)  # what a clinician could have been shown
    await forget_conversations(res, pseudonym)  # conversation memory goes at once
    count = 0
    async with res.sessionmaker.begin() as session:
        user = await get_user(session, pseudonym)
        if user is not None and user.research_consent:
            await withdraw_scope(session, res, user, "research", language_code)
        if user is not None:
            count = (await erase_research_text(session, user)).questions
    log.info("research.withdrawn", questions=count, held=held)
    return Erased(count, held)


async def forget(res: Resources, pseudonym: str, chat_id: int, language_code: str) -> Erased:
    """Erase everything about the user and end their service consent."""
    await res.queue.cancel(pseudonym)  # a waiting question leaves Redis now
    held = await res.held.drop_held(pseudonym)  # and so does one held for consent in a group
    await res.pending_languages.forget_language(pseudonym)
    await res.cases.forget_user(pseudonym)  # handover offers and where clinicians' replies go
    await forget_conversations(res, pseudonym)
    count = 0
    async with res.sessionmaker.begin() as session:
        user = await get_user(session, pseudonym)
        if user is not None:
            for scope in [
                s for s, on in (("service", user.service_consent), ("research", user.research_consent)) if on
            ]:
                await withdraw_scope(session, res, user, scope, language_code)
            count = (await forget_user(session, user)).questions
    await res.progress.stop_typing(chat_id)
    language.forget_recalled()
    log.info("user.forgotten", questions=count, held=held)
    return Erased(count, held)
