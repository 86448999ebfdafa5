"""Reviewer pages: conversations, one conversation, the audit log, consent events and statistics.

Every page that shows question or answer text appends an audit event naming the reader and what
was read, in the same transaction as the read: no text is shown unless the read was recorded.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from bot.console import queries, stats
from bot.console.charts import bar_chart
from bot.console.health import HealthProbe
from bot.console.web import Viewer, load_viewer, refuse, render, requires, sessions
from storage.repositories.audit import append_audit


async def home(request: Request) -> Response:
    """The conversations are the start page (the cases, for clinicians)."""
    viewer = await load_viewer(request)
    if viewer is None:
        return RedirectResponse("/login?next=%2F", status_code=303)  # then here again, by role
    return RedirectResponse("/conversations" if viewer.reviews else "/cases", status_code=303)


@requires("reviewer")
async def conversation_list(request: Request, viewer: Viewer) -> Response:
    """Research conversations with filters and paging; the list view is audited."""
    filters = queries.ConversationFilter.from_query(request.query_params)
    async with sessions(request).begin() as session:
        page = await queries.conversations(session, filters)
        languages = await queries.languages(session)
        if page.items:
            ids = [item.question.id for item in page.items]
            payload = {"actor": viewer.name, "role": viewer.role, "read": "question excerpts", "ids": ids}
            await append_audit(session, "review.list", None, payload)
    context = {"page": page, "filters": filters, "languages": languages}
    return render(request, "conversations.html", context)


@requires("reviewer")
async def conversation_detail(request: Request, viewer: Viewer) -> Response:
    """One question and its answer with model hash, prompt version, timings; the view is audited."""
    question_id = str(request.path_params["question_id"])
    async with sessions(request).begin() as session:
        item = await queries.conversation(session, question_id)
        if item is None:
            return refuse(request, 404, "There is no research conversation with this id.")
        turns = await queries.thread(session, item)
        read = ["question", "answer"] if item.answer is not None else ["question"]
        if item.signals.feedback_reason:
            read.append("feedback reason")
        payload: dict[str, object] = {"actor": viewer.name, "role": viewer.role, "read": read}
        if len(turns) > 1:  # the other turns of the thread were shown too
            payload["thread"] = [turn.question.id for turn in turns if turn.question.id != question_id]
        await append_audit(session, "review.read", question_id, payload)
    return render(request, "conversation.html", {"item": item, "turns": turns})


@requires("reviewer")
async def audit_log(request: Request, _: Viewer) -> Response:
    """The chain's verification status at the top, then the events, newest first."""
    page = queries.page_number(request.query_params.get("page"))
    async with sessions(request)() as session:
        status = await queries.chain_status(session)
        events, total = await queries.audit_events(session, page)
    pages = max(1, -(-total // queries.PAGE_SIZE))
    context = {"status": status, "events": events, "total": total, "page": page, "pages": pages}
    return render(request, "audit.html", context)


@requires("reviewer")
async def consent_log(request: Request, _: Viewer) -> Response:
    """Consent events, newest first, with pseudonyms."""
    page = queries.page_number(request.query_params.get("page"))
    async with sessions(request)() as session:
        events, total = await queries.consent_events(session, page)
    pages = max(1, -(-total // queries.PAGE_SIZE))
    return render(request, "consent.html", {"events": events, "total": total, "page": page, "pages": pages})


@requires("reviewer")
async def statistics(request: Request, _: Viewer) -> Response:
    """Counts, answer-time percentiles, feedback, red flags, queue and workers, with SVG charts."""
    async with sessions(request)() as session:
        figures = await stats.collect(session)
    probe: HealthProbe | None = request.app.state.health
    health = await probe() if probe is not None else None
    per_day = [(day.strftime("%d %b"), float(count)) for day, count in figures.per_day]
    charts = {
        "per_day": bar_chart(per_day, title="Questions per day", unit="questions", label_every=5),
        "times": bar_chart(
            [(label, float(count)) for label, count in figures.time_histogram],
            title="Time from question to answer",
            unit="answers",
        ),
    }
    context = {"stats": figures, "charts": charts, "health": health, "percentiles": stats.PERCENTILES}
    return render(request, "stats.html", context)
