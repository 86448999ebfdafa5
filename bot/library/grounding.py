"""Passages for evaluation questions, retrieved exactly as the bot retrieves them (eval --library)."""

from __future__ import annotations

from collections.abc import Sequence

from bot.flows.library import RetrievalLimits, retrieve
from inference.evaluation.data import Question
from inference.prompt import passages_block
from storage.db import make_engine, make_sessionmaker


async def ground_questions(
    url: str, questions: Sequence[Question], limits: RetrievalLimits | None = None
) -> tuple[str, dict[int, str]]:
    """The library version and, by question line, the passage block its prompt starts with."""
    engine = make_engine(url)
    grounding: dict[int, str] = {}
    version = ""
    try:
        async with make_sessionmaker(engine)() as session:
            for question in questions:
                found = await retrieve(session, question.question, "en", limits or RetrievalLimits())
                version = found.library_version
                grounding[question.line] = passages_block(found.passages)
    finally:
        await engine.dispose()
    return version, grounding
