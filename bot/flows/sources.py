"""/sources: the library passages the user's last answer rests on (recorded with its question).

The last answer is that of the newest question that is answered or being answered: the passages
are recorded with the question before it is queued, so /sources sent the moment an answer arrives
(before its record is written) already shows them.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Question, User
from storage.repositories.library import StoredPassage, parse_passage_ids, passages_by_ids


@dataclass(frozen=True)
class LastSources:
    """The passage ids of the user's last answer, each with the passage (None: removed since)."""

    passages: list[tuple[int, StoredPassage | None]]


async def last_answer_sources(session: AsyncSession, pseudonym: str) -> LastSources | None:
    """The sources of the user's newest answer (None when they have no answer)."""
    query = (
        select(Question.passage_ids)
        .join(User, User.id == Question.user_id)
        .where(User.pseudonym == pseudonym, Question.status.in_(("queued", "answered")))
        .order_by(Question.received_at.desc(), Question.id.desc())
        .limit(1)
    )
    found = (await session.execute(query)).first()
    if found is None:
        return None
    ids = parse_passage_ids(found[0])
    stored = await passages_by_ids(session, ids)
    return LastSources([(passage_id, stored.get(passage_id)) for passage_id in ids])
