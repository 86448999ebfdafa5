"""Clinician pages: the open cases, one case (audited read), claim, preview and send a reply.

Admins may open them too; reviewers may not. A reply is stored and put on the replies stream in
one step: the database transaction commits only once the bot has it to deliver, and the bot sends it
only once that transaction has committed (a rollback after the hand-over leaves nothing to send).
"""

from __future__ import annotations

from redis.exceptions import RedisError
from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from bot.console.outbox import ReplyOutbox
from bot.console.web import Viewer, refuse, render, requires, sessions
from bot.flows.handover import MAX_REPLY_CHARS, reply_text
from storage.errors import RedisUnavailableError
from storage.models import Case, ReviewAccount
from storage.queue.cases import CaseReplyMessage
from storage.repositories.audit import append_audit
from storage.repositories.cases import case_subject, claim_case, earlier_turns, listed_cases, reply_case

NO_OUTBOX = "The reply cannot be sent now: Redis (the bot's queue) is not reachable. Try again later."


def _case_id(request: Request) -> int | None:
    """The case id in the path, or None if it is not a number."""
    raw = str(request.path_params["case_id"])
    return int(raw) if raw.isdigit() and len(raw) < 12 else None


@requires("clinician")
async def case_list(request: Request, _: Viewer) -> Response:
    """Cases not closed yet, danger signs first, then the oldest (no text on this page)."""
    async with sessions(request)() as session:
        cases = await listed_cases(session)
        names = dict((await session.execute(select(ReviewAccount.id, ReviewAccount.name))).tuples().all())
    context = {"cases": cases, "names": names, "sent": request.query_params.get("sent")}
    return render(request, "cases.html", context)


async def _show(request: Request, viewer: Viewer, case_id: int, **extra: object) -> Response:
    """A case with its texts; the read is audited in the same transaction."""
    async with sessions(request).begin() as session:
        case = await session.get(Case, case_id)
        if case is None:
            return refuse(request, 404, "There is no case with this id.")
        read = [name for name in ("question", "answer", "reply") if getattr(case, f"{name}_text")]
        earlier = earlier_turns(case)
        read += ["earlier_turns"] if earlier else []
        await append_audit(
            session,
            "case.read",
            case_subject(case.id),
            {"actor": viewer.name, "role": viewer.role, "read": read},
        )
        claimer = await session.get(ReviewAccount, case.claimed_by) if case.claimed_by else None
    mine = case.status == "claimed" and case.claimed_by == viewer.id
    context = {"case": case, "earlier": earlier, "claimer": claimer.name if claimer else None, "mine": mine,
               "max_chars": MAX_REPLY_CHARS, "draft": "", "error": "", **extra}  # fmt: skip
    return render(request, "case.html", context, 400 if extra.get("error") else 200)


@requires("clinician")
async def case_detail(request: Request, viewer: Viewer) -> Response:
    """One case: the conversation's earlier turns, the question, the bot's answer, and what the viewer
    can do with it."""
    case_id = _case_id(request)
    if case_id is None:
        return refuse(request, 404, "There is no case with this id.")
    return await _show(request, viewer, case_id)


@requires("clinician")
async def case_claim(request: Request, viewer: Viewer) -> Response:
    """Claim the case for the viewer (refused when another clinician has it)."""
    case_id = _case_id(request)
    if case_id is None:
        return refuse(request, 404, "There is no case with this id.")
    async with sessions(request).begin() as session:
        case = await session.get(Case, case_id)
        if case is None:
            return refuse(request, 404, "There is no case with this id.")
        claimed = await claim_case(session, case, viewer.id, viewer.name)
    if not claimed:
        return await _show(
            request, viewer, case_id, error="Another clinician has this case, or it is answered."
        )
    return RedirectResponse(f"/cases/{case_id}", status_code=303)


def _draft(form_value: object) -> str:
    """The reply as typed, without trailing spaces and with Unix line ends."""
    return str(form_value or "").replace("\r\n", "\n").strip()


def _problem(draft: str) -> str:
    """Why a reply cannot be sent as it is ('' when it can)."""
    if not draft:
        return "Write a reply first."
    if len(draft) > MAX_REPLY_CHARS:
        return f"The reply is {len(draft)} characters long; at most {MAX_REPLY_CHARS} fit in one message."
    return ""


async def _checked_draft(request: Request, viewer: Viewer) -> tuple[int, str] | Response:
    """The case id and the reply drafted in the form, or the page that says why not."""
    case_id = _case_id(request)
    draft = _draft((await request.form()).get("reply"))
    if case_id is None:
        return refuse(request, 404, "There is no case with this id.")
    if problem := _problem(draft):
        return await _show(request, viewer, case_id, draft=draft, error=problem)
    return case_id, draft


@requires("clinician")
async def case_preview(request: Request, viewer: Viewer) -> Response:
    """Exactly what the user will receive, with Send and Edit."""
    checked = await _checked_draft(request, viewer)
    if isinstance(checked, Response):
        return checked
    case_id, draft = checked
    async with sessions(request)() as session:
        case = await session.get(Case, case_id)
    if case is None:
        return refuse(request, 404, "There is no case with this id.")
    if not (case.status == "claimed" and case.claimed_by == viewer.id):
        return await _show(request, viewer, case_id, error="Claim the case before replying.")
    context = {
        "case": case,
        "draft": draft,
        "preview": reply_text(case.language, draft),
        "max_chars": MAX_REPLY_CHARS,
    }
    return render(request, "case_preview.html", context)


class _NotSent(Exception):
    """The reply could not be handed to the bot: roll the transaction back."""


@requires("clinician")
async def case_send(request: Request, viewer: Viewer) -> Response:
    """Store the reply and hand it to the bot; the case closes once the user has it."""
    checked = await _checked_draft(request, viewer)
    if isinstance(checked, Response):
        return checked
    case_id, draft = checked
    outbox: ReplyOutbox | None = request.app.state.outbox
    try:
        async with sessions(request).begin() as session:
            case = await session.get(Case, case_id)
            if case is None:
                return refuse(request, 404, "There is no case with this id.")
            if not await reply_case(session, case, viewer.id, viewer.name, draft):
                raise _NotSent("Claim the case before replying; it may be answered already.")
            if outbox is None:
                raise _NotSent(NO_OUTBOX)
            message = CaseReplyMessage(
                case_id=case.id, question_id=case.question_id, language=case.language,
                text=reply_text(case.language, draft),
            )  # fmt: skip
            try:
                await outbox(message)
            except (RedisUnavailableError, RedisError, OSError) as exc:
                raise _NotSent(NO_OUTBOX) from exc
    except _NotSent as exc:
        return await _show(request, viewer, case_id, draft=draft, error=str(exc))
    return RedirectResponse(f"/cases?sent={case_id}", status_code=303)
