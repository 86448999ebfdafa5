"""Handover cases: open, list, claim, reply, close, rate, overdue and erase (every step audited).

No text ever goes into the audit chain: events carry the case id, the account name and hashes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Case, ConsentEvent, Tombstone, User, utcnow
from storage.repositories.audit import append_audit

WAITING = ("open", "claimed")  # no reply yet
LISTED = ("open", "claimed", "replied")  # on the clinicians' page (replied: being delivered)


def case_subject(case_id: int) -> str:
    """The audit subject of a case."""
    return f"case-{case_id}"


@dataclass(frozen=True)
class EarlierTurn:
    """A turn of the case's conversation before its question: what the clinician reads first."""

    turn: int
    question: str
    answer: str


def earlier_turns(case: Case) -> list[EarlierTurn]:
    """The earlier turns kept with a case, oldest first (none for a first question or once erased)."""
    return [
        EarlierTurn(int(t["turn"]), str(t["question"]), str(t["answer"]))
        for t in json.loads(case.earlier_turns or "[]")
    ]


def _turns_json(turns: Sequence[EarlierTurn]) -> str | None:
    """The stored form of ``turns`` (None when there are none)."""
    ordered = sorted(turns, key=lambda t: t.turn)
    rows = [{"turn": t.turn, "question": t.question, "answer": t.answer} for t in ordered]
    return json.dumps(rows, ensure_ascii=False) if rows else None


def _sha(text: str) -> str:
    """The SHA-256 of a text, hex."""
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class NewCase:
    """What opening a case needs: the question, its asker's agreement and the texts to show."""

    question_id: str
    user: User
    consent: ConsentEvent
    language: str
    danger: bool
    question_text: str
    answer_text: str | None
    earlier: Sequence[EarlierTurn] = field(default=())


async def case_of_question(session: AsyncSession, question_id: str) -> Case | None:
    """The case of a question, if one was opened."""
    return (await session.execute(select(Case).where(Case.question_id == question_id))).scalar_one_or_none()


async def open_case(session: AsyncSession, new: NewCase) -> Case:
    """Open the case of a question once (a second request returns the first case)."""
    existing = await case_of_question(session, new.question_id)
    if existing is not None:
        return existing
    case = Case(
        question_id=new.question_id, user_id=new.user.id, consent_id=new.consent.id, language=new.language,
        danger=new.danger, status="open", question_text=new.question_text, answer_text=new.answer_text,
        earlier_turns=_turns_json(new.earlier), opened_at=utcnow(),
    )  # fmt: skip
    session.add(case)
    await session.flush()
    await append_audit(
        session, "case.opened", case_subject(case.id),
        {"question_id": new.question_id, "danger": new.danger, "consent_id": new.consent.id,
         "question_sha256": _sha(new.question_text),
         "answer_sha256": _sha(new.answer_text) if new.answer_text is not None else None,
         "earlier_turns": len(new.earlier),
         "earlier_sha256": _sha(case.earlier_turns) if case.earlier_turns is not None else None},
    )  # fmt: skip
    return case


async def listed_cases(session: AsyncSession) -> list[Case]:
    """Cases not closed yet: danger-sign cases first, then the oldest."""
    query = select(Case).where(Case.status.in_(LISTED)).order_by(Case.danger.desc(), Case.opened_at, Case.id)
    return list((await session.execute(query)).scalars())


async def claim_case(session: AsyncSession, case: Case, account_id: int, actor: str) -> bool:
    """Claim an open case for ``account_id`` (False if someone else has it or it is answered)."""
    if case.status == "claimed" and case.claimed_by == account_id:
        return True
    if case.status != "open":
        return False
    case.status, case.claimed_by, case.claimed_at = "claimed", account_id, utcnow()
    await session.flush()
    await append_audit(session, "case.claimed", case_subject(case.id), {"actor": actor})
    return True


async def reply_case(session: AsyncSession, case: Case, account_id: int, actor: str, text: str) -> bool:
    """Store the reply of the clinician who claimed the case (False if it is not theirs to answer)."""
    if case.status != "claimed" or case.claimed_by != account_id:
        return False
    case.status, case.reply_text, case.reply_sha256 = "replied", text, _sha(text)
    case.replied_at = utcnow()
    await session.flush()
    await append_audit(
        session, "case.replied", case_subject(case.id),
        {"actor": actor, "reply_sha256": case.reply_sha256, "reply_chars": len(text)},
    )  # fmt: skip
    return True


def _wipe(case: Case) -> int:
    """Set the case's texts (earlier turns too) to NULL; the number of characters erased."""
    chars = sum(len(t.question) + len(t.answer) for t in earlier_turns(case))
    chars += sum(len(value or "") for value in (case.question_text, case.answer_text, case.reply_text))
    case.question_text = case.answer_text = case.reply_text = case.earlier_turns = None
    return chars


async def close_case(session: AsyncSession, case_id: int, *, delivered: bool) -> Case | None:
    """Close a replied case after delivery; its texts stay only with the asker's research consent."""
    # Locked: the console hands a reply over before its transaction commits; wait for that commit, or
    # the reply text it writes would outlive the wipe (BEGIN IMMEDIATE does the same on SQLite).
    case = await session.get(Case, case_id, with_for_update=True, populate_existing=True)
    if case is None or case.status == "closed":
        return case
    user = await session.get(User, case.user_id)
    case.status, case.closed_at = "closed", utcnow()
    case.outcome = "delivered" if delivered else "undeliverable"
    kept = user is not None and user.research_consent
    if not kept:
        _wipe(case)
    await session.flush()
    await append_audit(
        session, "case.closed", case_subject(case.id), {"outcome": case.outcome, "texts_kept": kept}
    )
    return case


async def reply_committed(session: AsyncSession, case_id: int) -> bool:
    """Whether the case holds a committed reply still to deliver. Locked like ``close_case``: the
    console hands a reply over just before its transaction commits, so this waits for that commit,
    and a transaction rolled back after the hand-over leaves the case without its reply."""
    case = await session.get(Case, case_id, with_for_update=True, populate_existing=True)
    return case is not None and case.status == "replied"


async def rate_case(session: AsyncSession, case_id: int, rating: str) -> Case | None:
    """Store the asker's 👍/👎 on the clinician's reply."""
    case = await session.get(Case, case_id)
    if case is not None:
        case.rating = rating
        await session.flush()
        await append_audit(session, "case.rated", case_subject(case.id), {"rating": rating})
    return case


async def overdue_cases(session: AsyncSession, opened_before: datetime) -> list[Case]:
    """Cases without a reply, opened before ``opened_before``, not reported overdue yet."""
    query = select(Case).where(
        Case.status.in_(WAITING), Case.opened_at < opened_before, Case.overdue_at.is_(None)
    )
    return list((await session.execute(query.order_by(Case.id))).scalars())


async def mark_overdue(session: AsyncSession, case: Case) -> None:
    """Record that the on-call chat (if unclaimed) and the user were told the case is waiting."""
    case.overdue_at = utcnow()
    await session.flush()
    await append_audit(
        session, "case.overdue", case_subject(case.id), {"claimed": case.claimed_by is not None}
    )


async def erase_case_texts(session: AsyncSession, user_id: int, reason: str, *, all_cases: bool) -> int:
    """Erase the texts of the user's cases (closed ones only unless ``all_cases``, which also closes
    the open ones); a tombstone each and one audit event. Returns how many cases lost text."""
    query = select(Case).where(Case.user_id == user_id, Case.erased_at.is_(None))
    query = query.with_for_update().execution_options(populate_existing=True)  # as close_case
    return await _erase(session, list((await session.execute(query)).scalars()), reason, all_cases=all_cases)


async def erase_expired_cases(session: AsyncSession, cutoff: datetime) -> int:
    """Erase the kept texts of closed cases opened before ``cutoff`` (retention)."""
    query = select(Case).where(Case.status == "closed", Case.opened_at < cutoff, Case.erased_at.is_(None))
    return await _erase(session, list((await session.execute(query)).scalars()), "retention", all_cases=False)


async def _erase(session: AsyncSession, cases: list[Case], reason: str, *, all_cases: bool) -> int:
    """Wipe ``cases`` (closing open ones when ``all_cases``), a tombstone each, one audit event."""
    now, count, closed = utcnow(), 0, []
    for case in cases:
        if case.status != "closed" and not all_cases:
            continue
        chars = _wipe(case)
        case.erased_at = now
        if case.status != "closed":
            case.status, case.outcome, case.closed_at = "closed", "erased", now
            closed.append(case.id)
        session.add(Tombstone(
            erased_at=now, reason=reason, kind="case", ref=str(case.id), user_id=case.user_id,
            fields="cases.question_text,cases.answer_text,cases.reply_text,cases.earlier_turns",
            chars=chars,
        ))  # fmt: skip
        count += 1
    if count:
        await session.flush()
        for case_id in closed:  # a case the erasure closed is closed like any other, in the audit too
            await append_audit(session, "case.closed", case_subject(case_id), {"outcome": "erased"})
        await append_audit(session, "data.erased", None, {"cases": count, "reason": reason})
    return count
