"""The research data set: questions, answers, feedback and handover cases of research-consenting users.

``meditron-bot export`` and the review console's export page both use ``audited_export`` so they
produce the same file. Only questions stored with research consent (``Question.research``), not
erased, of users whose research consent still stands, received in ``[since, until)``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterable
from datetime import datetime
from typing import IO, Any

from sqlalchemy import ColumnElement, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Answer, Case, ConsentEvent, Feedback, Question, User
from storage.models.base import check_one_of
from storage.repositories.audit import append_audit

ExportRow = dict[str, Any]
FORMATS = ("csv", "jsonl")
QUESTION_FIELDS = (
    "question_id",
    "user_pseudonym",
    "chat_type",
    "language",
    "received_at",
    "question_text",
    "question_status",
    "passage_ids",
    "library_version",
)
ANSWER_FIELDS = (
    "answer_text",
    "answer_status",
    "model_sha256",
    "prompt_version",
    "prompt_tokens",
    "completion_tokens",
    "wait_s",
    "first_token_s",
    "generate_s",
    "total_s",
    "stop_reason",
    "conversation_id",
    "conversation_turn",
)
FEEDBACK_FIELDS = ("feedback_rating", "feedback_reason")
# The handover case of a question, if its asker sent it to a clinician (times from the case opening).
CASE_FIELDS = (
    "case_status",
    "case_outcome",
    "case_danger",
    "case_claim_s",
    "case_reply_s",
    "case_close_s",
    "case_reply_text",
    "case_rating",
)
EXPORT_FIELDS = (*QUESTION_FIELDS, *ANSWER_FIELDS, *FEEDBACK_FIELDS, *CASE_FIELDS, "consent_text_version")


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    """Seconds from ``start`` to ``end`` (3 decimals), or None if either is missing."""
    if start is None or end is None:
        return None
    return round((end - start).total_seconds(), 3)


def _answer_fields(question: Question, answer: Answer | None) -> ExportRow:
    """The answer's columns (all None when the question has no answer)."""
    if answer is None:
        return dict.fromkeys(ANSWER_FIELDS)
    return {
        "answer_text": answer.text,
        "answer_status": answer.status,
        "model_sha256": answer.model_sha256,
        "prompt_version": answer.prompt_version,
        "prompt_tokens": answer.prompt_tokens,
        "completion_tokens": answer.completion_tokens,
        "wait_s": _seconds(question.received_at, answer.taken_at),
        "first_token_s": _seconds(answer.taken_at, answer.first_token_at),
        "generate_s": _seconds(answer.first_token_at or answer.taken_at, answer.finished_at),
        "total_s": _seconds(question.received_at, answer.finished_at),
        "stop_reason": answer.stop_reason,
        "conversation_id": answer.conversation_id,
        "conversation_turn": answer.turn,
    }


def _case_fields(case: Case | None) -> ExportRow:
    """The case's columns (all None when the question was not handed over)."""
    if case is None:
        return dict.fromkeys(CASE_FIELDS)
    return {
        "case_status": case.status,
        "case_outcome": case.outcome,
        "case_danger": case.danger,
        "case_claim_s": _seconds(case.opened_at, case.claimed_at),
        "case_reply_s": _seconds(case.opened_at, case.replied_at),
        "case_close_s": _seconds(case.opened_at, case.closed_at),
        "case_reply_text": case.reply_text,
        "case_rating": case.rating,
    }


def _row(
    question: Question,
    answer: Answer | None,
    feedback: Feedback | None,
    case: Case | None,
    pseudonym: str,
    consent_version: str | None,
) -> ExportRow:
    """One export row, its keys in ``EXPORT_FIELDS`` order."""
    row: ExportRow = {
        "question_id": question.id,
        "user_pseudonym": pseudonym,
        "chat_type": question.chat_type,
        "language": question.language,
        "received_at": question.received_at.isoformat(),
        "question_text": question.text,
        "question_status": question.status,
        "passage_ids": question.passage_ids,  # the library passages its answer rests on ("12,40,7")
        "library_version": question.library_version,
    }
    row.update(_answer_fields(question, answer))
    row["feedback_rating"] = feedback.rating if feedback else None
    row["feedback_reason"] = feedback.reason if feedback else None
    row.update(_case_fields(case))
    row["consent_text_version"] = consent_version
    return {name: row[name] for name in EXPORT_FIELDS}


async def _research_consents(session: AsyncSession, user_ids: set[int]) -> dict[int, list[ConsentEvent]]:
    """Each user's granted research-consent events, oldest first."""
    if not user_ids:
        return {}
    query = (
        select(ConsentEvent)
        .where(
            ConsentEvent.user_id.in_(user_ids),
            ConsentEvent.scope == "research",
            ConsentEvent.new_value == "granted",
        )
        .order_by(ConsentEvent.created_at, ConsentEvent.id)
    )
    grouped: dict[int, list[ConsentEvent]] = {}
    for event in (await session.execute(query)).scalars():
        grouped.setdefault(event.user_id, []).append(event)
    return grouped


def _version_at(events: list[ConsentEvent], when: datetime, fallback: str | None) -> str | None:
    """The consent text version granted last before ``when`` (else the first granted, else ``fallback``)."""
    before = [event.text_version for event in events if event.created_at <= when]
    if before:
        return before[-1]
    return events[0].text_version if events else fallback


def research_conditions() -> list[ColumnElement[bool]]:
    """WHERE clauses of the research data set (a query joining Question and User)."""
    return [
        Question.research.is_(True),
        Question.erased_at.is_(None),
        User.erased_at.is_(None),
        User.research_consent.is_(True),
    ]


async def export_rows(session: AsyncSession, since: datetime, until: datetime) -> list[ExportRow]:
    """The research rows received in ``[since, until)``, oldest first."""
    query = (
        select(Question, Answer, Feedback, Case, User)
        .join(User, User.id == Question.user_id)
        .outerjoin(Answer, Answer.question_id == Question.id)
        .outerjoin(Feedback, Feedback.question_id == Question.id)
        .outerjoin(Case, Case.question_id == Question.id)
        .where(
            *research_conditions(),
            Question.received_at >= since,
            Question.received_at < until,
        )
        .order_by(Question.received_at, Question.id)
    )
    results = list((await session.execute(query)).tuples())
    consents = await _research_consents(session, {user.id for *_, user in results})
    return [
        _row(
            question,
            answer,
            feedback,
            case,
            user.pseudonym,
            _version_at(consents.get(user.id, []), question.received_at, user.consent_text_version),
        )
        for question, answer, feedback, case, user in results
    ]


# Cells a spreadsheet would read as a formula (OWASP "CSV injection"): =, +, -, @, tab, carriage return.
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def _csv_value(value: Any) -> Any:
    """Empty cell for None; text that a spreadsheet would run as a formula gets a leading ``'``."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(FORMULA_TRIGGERS):
        return "'" + value
    return value


def write_csv(rows: Iterable[ExportRow], stream: IO[str]) -> None:
    """Write ``rows`` as CSV with a header line (``EXPORT_FIELDS``); formula-like text is neutralised.

    A text cell starting with ``=``, ``+``, ``-``, ``@``, tab or CR is written with a single quote in
    front, so a spreadsheet shows it as text instead of evaluating it. JSON lines keep the text as is.
    Lines end in CRLF (RFC 4180), which also makes the writer quote any cell holding a lone CR.
    """
    writer = csv.DictWriter(stream, fieldnames=EXPORT_FIELDS, extrasaction="ignore", lineterminator="\r\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({name: _csv_value(row.get(name)) for name in EXPORT_FIELDS})


def write_jsonl(rows: Iterable[ExportRow], stream: IO[str]) -> None:
    """Write ``rows`` as JSON lines (one object per row, UTF-8 text kept readable)."""
    for row in rows:
        stream.write(json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n")


def render(rows: list[ExportRow], fmt: str) -> bytes:
    """The file content of ``rows`` in ``fmt`` ("csv" or "jsonl"), UTF-8."""
    check_one_of("format", fmt, FORMATS)
    buffer = io.StringIO()
    (write_csv if fmt == "csv" else write_jsonl)(rows, buffer)
    return buffer.getvalue().encode("utf-8")


async def audited_export(
    session: AsyncSession, *, actor: str, since: datetime, until: datetime, fmt: str
) -> tuple[bytes, int, str]:
    """Build the file and append "export.created" in the caller's transaction (the caller commits).

    Returns the content, its row count and its sha256.
    """
    rows = await export_rows(session, since, until)
    content = render(rows, fmt)
    digest = hashlib.sha256(content).hexdigest()
    payload = {
        "actor": actor,
        "format": fmt,
        "rows": len(rows),
        "sha256": digest,
        "since": since.isoformat(),
        "until": until.isoformat(),
    }
    await append_audit(session, "export.created", None, payload)
    return content, len(rows), digest
