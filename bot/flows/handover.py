"""Handover decisions: what the asker agrees to, opening a case, and the exact text a reply becomes.

No Telegram here: handlers pass pseudonyms, ids and the language; the console uses ``reply_text``
for its preview, so the preview is exactly what the user receives.

A case on a follow-up keeps the earlier turns of its conversation, as the asker agreed. They come
from conversation memory in Redis (what the model was given, while it lasts) and, for turns no longer
there (expired, cleared by /new, trimmed to CONVERSATION_TURNS), from the research records when the
asker agreed to research and their texts are still kept. Without research consent, an expired
memory means the clinician sees no earlier turns: nothing else holds them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import Enum

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.telegram import texts
from bot.telegram.i18n import t
from storage.models import Case, Question, User
from storage.queue.cases import CaseQueue, Offer
from storage.queue.conversations import ConversationStore, Turn
from storage.repositories.cases import EarlierTurn, NewCase, case_of_question, open_case
from storage.repositories.consent import record_consent
from storage.repositories.questions import recorded_turns
from storage.repositories.users import get_user

CONSENT_VERSION = "clinician-2"  # the agreement's wording: bump with texts.HANDOVER_CONSENT
MAX_REPLY_CHARS = 3500  # with the heading, one Telegram message
MAX_EARLIER_TURNS = 20  # the newest earlier turns a case keeps


class Refusal(Enum):
    """Why a question cannot be handed over."""

    STALE = texts.HANDOVER_STALE
    NOT_YOURS = texts.HANDOVER_NOT_YOURS
    ALREADY = texts.HANDOVER_ALREADY


@dataclass(frozen=True)
class Agreement:
    """The agreement text in one language, with the version and hash its consent event stores."""

    language: str
    text: str

    @property
    def sha256(self) -> str:
        """sha256 of the exact text shown."""
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()


def agreement(language: str) -> Agreement:
    """What the asker is asked to agree to, in their language."""
    return Agreement(language, t(texts.HANDOVER_CONSENT, language))


def reply_text(language: str, reply: str) -> str:
    """The message the user receives for a clinician's ``reply``: marked as from the study team."""
    return t(texts.HANDOVER_REPLY, language).format(reply=reply.strip())


async def handover_offer(
    sessions: async_sessionmaker[AsyncSession], cases: CaseQueue, question_id: str, user: str
) -> Offer | Refusal:
    """The offer the user may hand over now, or why not (expired, another's question, already open)."""
    offer = await cases.offer(question_id)
    async with sessions() as session:
        existing = await case_of_question(session, question_id)
        recorded = await session.get(Question, question_id)
    if existing is not None:
        return Refusal.ALREADY
    if offer is None or recorded is None:  # not recorded: the asker never agreed to use the service
        return Refusal.STALE
    return offer if offer.user == user else Refusal.NOT_YOURS


async def _remembered(conversations: ConversationStore, offer: Offer) -> dict[int, Turn]:
    """The turns before the offer's question still in conversation memory, by turn number."""
    if offer.conversation_id is None or offer.turn is None or offer.turn <= 1:
        return {}
    return await conversations.earlier(offer.user, offer.conversation_id, offer.turn)


async def _earlier(
    session: AsyncSession, user: User, offer: Offer, remembered: dict[int, Turn]
) -> list[EarlierTurn]:
    """The earlier turns the case keeps: memory first, then the research records for the rest."""
    turns = dict(remembered)
    if (
        user.research_consent
        and offer.conversation_id is not None
        and offer.turn is not None
        and offer.turn > 1
    ):
        recorded = await recorded_turns(session, user.id, offer.conversation_id, offer.turn)
        turns = recorded | turns
    numbers = sorted(turns)[-MAX_EARLIER_TURNS:]
    return [EarlierTurn(number, *turns[number]) for number in numbers]


async def decide(
    sessions: async_sessionmaker[AsyncSession], cases: CaseQueue, conversations: ConversationStore,
    offer: Offer, *, agreed: bool, language: str,
) -> Case | None:  # fmt: skip
    """Record the asker's choice for this one question; on yes, open its case (texts copied into it,
    with the earlier turns of its conversation)."""
    shown = agreement(language)
    remembered = await _remembered(conversations, offer) if agreed else {}
    async with sessions.begin() as session:
        user = await get_user(session, offer.user)
        if user is None or not user.service_consent:
            return None
        existing = await case_of_question(session, offer.question_id)
        if existing is not None:
            return existing
        consent = await record_consent(
            session, user, scope="clinician", new_value="granted" if agreed else "declined",
            text_version=CONSENT_VERSION, text_sha256=shown.sha256, language=language, source="button",
            question_id=offer.question_id,
        )  # fmt: skip
        if not agreed:
            return None
        case = await open_case(session, NewCase(
            question_id=offer.question_id, user=user, consent=consent, language=language,
            danger=offer.danger, question_text=offer.question, answer_text=offer.answer,
            earlier=await _earlier(session, user, offer, remembered),
        ))  # fmt: skip
    await cases.opened(offer)
    return case
