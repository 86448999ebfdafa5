"""Feedback on answers: a rating by the asker only, and an optional reason after a 👎."""

from __future__ import annotations

from enum import StrEnum

import structlog

from bot.resources import Resources
from storage.repositories.feedback import asker_of, record_feedback, record_reason

log = structlog.get_logger("bot.feedback")


class Rated(StrEnum):
    """What became of a rating."""

    RECORDED = "recorded"
    STALE = "stale"  # no such question (or not this bot's button)
    NOT_YOURS = "not_yours"


async def rate(res: Resources, pseudonym: str, question_id: str, rating: str) -> Rated:
    """Store the asker's rating of an answer."""
    async with res.sessionmaker.begin() as session:
        asker = await asker_of(session, question_id)
        if asker is None:
            return Rated.STALE
        if asker[0] != pseudonym:
            return Rated.NOT_YOURS
        await record_feedback(session, question_id, rating)
    log.info("feedback.recorded", rating=rating, question_id=question_id)
    return Rated.RECORDED


async def prompted(res: Resources, chat: str, message_id: int, question_id: str) -> None:
    """Remember that a reply to this bot message (chat pseudonym) is the reason for a 👎."""
    await res.prompts.remember_prompt(chat, message_id, question_id)


async def reason(res: Resources, chat: str, replied_to: int, pseudonym: str, text: str) -> bool:
    """Store ``text`` as the reason if it replies to the asker's reason prompt; False: not a reason."""
    question_id = await res.prompts.take_prompt(chat, replied_to)
    if question_id is None:
        return False
    async with res.sessionmaker.begin() as session:
        asker = await asker_of(session, question_id)
        if asker is None or asker[0] != pseudonym:
            await res.prompts.remember_prompt(chat, replied_to, question_id)
            return False
        stored = await record_reason(session, question_id, text)
    log.info("feedback.reason", stored=stored, question_id=question_id)
    return True
