"""Questions and answers; free text is stored only for users who agreed to research."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.errors import UnknownQuestionError
from storage.models import ANSWER_STATUSES, QUESTION_STATUSES, Answer, Question, User, utcnow
from storage.models.base import check_one_of
from storage.repositories.audit import append_audit
from storage.repositories.library import format_passage_ids

RED_FLAG_EVENT = "question.red_flag"
RED_FLAG_LABEL = re.compile(r"[a-z]{2,3}:[a-z0-9_]{1,28}")  # language:rule, as bot.redflags labels them


def sha256_hex(text: str) -> str:
    """Return the sha256 hex digest of ``text`` encoded as UTF-8."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


async def _get_question(session: AsyncSession, question_id: str) -> Question:
    """Return the question or raise StorageError if there is none."""
    question = await session.get(Question, question_id)
    if question is None:
        raise UnknownQuestionError(question_id)
    return question


async def record_question(
    session: AsyncSession,
    *,
    question_id: str,
    user: User,
    chat_pseudonym: str,
    chat_type: str,
    language: str | None,
    text: str,
    research: bool,
    received_at: datetime,
    red_flag: str | None = None,
    passage_ids: Sequence[int] = (),
    library_version: str = "",
) -> Question:
    """Store a question (text and its hash only if ``research``) and audit its receipt.

    ``red_flag`` is the label of the danger sign it matched (``en:not_breathing``): stored with
    the question and audited as ``question.red_flag`` in the same transaction, whatever the consent.
    ``passage_ids`` (the library passages retrieved for it, which its answer rests on) are stored
    with every question, for /sources, and erased with its text; the audit, which is never erased,
    names them only under research consent, like the text hash. The library version is audited
    whenever there is a library.
    """
    if red_flag is not None and not RED_FLAG_LABEL.fullmatch(red_flag):
        raise ValueError("red_flag must be a rule label like 'en:not_breathing'")
    text_sha256 = sha256_hex(text) if research else None
    await session.flush()  # make sure the user has an id
    question = Question(
        id=question_id,
        user_id=user.id,
        chat_pseudonym=chat_pseudonym,
        chat_type=chat_type,
        language=language,
        text=text if research else None,
        text_sha256=text_sha256,
        text_chars=len(text),
        research=research,
        received_at=received_at,
        status="queued",
        red_flag=red_flag,
        passage_ids=format_passage_ids(passage_ids),
        library_version=library_version or None,
    )
    session.add(question)
    await session.flush()
    payload: dict[str, object] = {
        "chat_type": chat_type,
        "pseudonym": user.pseudonym,
        "research": research,
        "text_chars": len(text),
        "text_sha256": text_sha256,
    }
    if library_version:
        payload["library_version"] = library_version
        payload["passage_ids"] = list(passage_ids) if research else None
    await append_audit(session, "question.received", question_id, payload)
    if red_flag is not None:
        await append_audit(session, RED_FLAG_EVENT, question_id, {"rule": red_flag})
    return question


async def mark_enqueued(session: AsyncSession, question_id: str, enqueued_at: datetime | None = None) -> None:
    """Record when the question was put on the queue (now, unless given)."""
    question = await _get_question(session, question_id)
    question.enqueued_at = enqueued_at or utcnow()
    await session.flush()


async def set_question_status(session: AsyncSession, question_id: str, status: str) -> None:
    """Set the question's status ("queued", "answered", "cancelled" or "failed")."""
    check_one_of("status", status, QUESTION_STATUSES)
    question = await _get_question(session, question_id)
    question.status = status
    await session.flush()


async def record_answer(
    session: AsyncSession,
    *,
    question_id: str,
    text: str,
    status: str,
    model_sha256: str | None,
    prompt_version: str,
    prompt_tokens: int,
    completion_tokens: int,
    taken_at: datetime,
    first_token_at: datetime | None,
    finished_at: datetime,
    sent_at: datetime | None,
    worker: str,
    stop_reason: str,
    conversation_id: str | None = None,
    turn: int | None = None,
) -> Answer:
    """Store the answer (text only for research), audit it, mark the question answered/failed."""
    check_one_of("status", status, ANSWER_STATUSES)
    question = await _get_question(session, question_id)
    text = text.replace("\x00", "")  # a model can emit NUL bytes; PostgreSQL text cannot hold them
    text_sha256 = sha256_hex(text) if question.research else None
    answer = Answer(
        question_id=question_id,
        text=text if question.research else None,
        text_sha256=text_sha256,
        status=status,
        model_sha256=model_sha256,
        prompt_version=prompt_version,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        taken_at=taken_at,
        first_token_at=first_token_at,
        finished_at=finished_at,
        sent_at=sent_at,
        worker=worker,
        stop_reason=stop_reason,
        conversation_id=conversation_id,
        turn=turn or None,
    )
    session.add(answer)
    delivered = status == "ok" and sent_at is not None  # sent_at None: could not be delivered
    question.status = "answered" if delivered else "failed"
    await session.flush()
    payload = {
        "completion_tokens": completion_tokens,
        "delivered": sent_at is not None,
        "model_sha256": model_sha256,
        "status": status,
        "stop_reason": stop_reason,
        "text_chars": len(text),
        "text_sha256": text_sha256,
        "worker": worker,
    }
    await append_audit(session, "answer.sent", question_id, payload)
    return answer


async def count_questions(session: AsyncSession) -> int:
    """Return how many questions are stored."""
    return int((await session.execute(select(func.count()).select_from(Question))).scalar_one())


async def recorded_turns(
    session: AsyncSession, user_id: int, conversation_id: str, turn: int
) -> dict[int, tuple[str, str]]:
    """The turns before ``turn`` of the user's conversation whose question and answer texts were
    kept for research, by turn number (text that was never kept or was erased is not there)."""
    query = (
        select(Answer.turn, Question.text, Answer.text)
        .join(Question, Question.id == Answer.question_id)
        .where(
            Question.user_id == user_id,
            Answer.conversation_id == conversation_id,
            Answer.turn < turn,
            Question.text.is_not(None),
            Answer.text.is_not(None),
        )
    )
    rows = (await session.execute(query)).tuples().all()
    return {number: (q, a) for number, q, a in rows if number is not None and q is not None and a is not None}
