"""Admin pages: the research export (downloaded and audited) and account management."""

from __future__ import annotations

from datetime import date, timedelta

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from bot.console.queries import day_start
from bot.console.web import Viewer, refuse, render, requires, sessions
from storage.models import ROLES, utcnow
from storage.repositories.accounts import (
    AccountError,
    add_account,
    disable_account,
    list_accounts,
    unlock_account,
)
from storage.repositories.export import FORMATS, audited_export

MEDIA_TYPES = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson; charset=utf-8"}


def _day(value: object) -> date:
    """A YYYY-MM-DD form value as a date (ValueError otherwise)."""
    return date.fromisoformat(str(value or ""))


@requires("admin")
async def export_form(request: Request, _: Viewer) -> Response:
    """The export form (default: the last 30 days)."""
    today = utcnow().date()
    context = {"since": today - timedelta(days=29), "until": today, "formats": FORMATS}
    return render(request, "export.html", context)


@requires("admin")
async def export_download(request: Request, viewer: Viewer) -> Response:
    """Build the export for the chosen days, audit it and send it as a download."""
    form = await request.form()
    fmt = str(form.get("format", "csv"))
    try:
        since = day_start(_day(form.get("since")))
        until = day_start(_day(form.get("until"))) + timedelta(days=1)
    except (ValueError, OverflowError):  # OverflowError: the day after 9999-12-31
        return refuse(request, 400, "Give both dates as YYYY-MM-DD.")
    if fmt not in FORMATS or until <= since:
        return refuse(request, 400, "Choose csv or jsonl and a 'to' date on or after the 'from' date.")
    async with sessions(request).begin() as session:
        content, rows, digest = await audited_export(
            session, actor=viewer.name, since=since, until=until, fmt=fmt
        )
    name = f"meditron-research-{since.date()}-{(until - timedelta(days=1)).date()}.{fmt}"
    headers = {
        "content-disposition": f'attachment; filename="{name}"',
        "x-export-rows": str(rows),
        "x-export-sha256": digest,
    }
    return Response(content, media_type=MEDIA_TYPES[fmt], headers=headers)


async def _accounts_page(
    request: Request, *, message: str = "", error: str = "", status_code: int = 200
) -> Response:
    """The accounts list and the form to add one."""
    async with sessions(request)() as session:
        accounts = await list_accounts(session)
    context = {"accounts": accounts, "roles": ROLES, "message": message, "error": error, "now": utcnow()}
    return render(request, "accounts.html", context, status_code)


@requires("admin")
async def accounts(request: Request, _: Viewer) -> Response:
    """Every account with its role and state."""
    return await _accounts_page(request)


@requires("admin")
async def account_add(request: Request, viewer: Viewer) -> Response:
    """Create an account from the form (the password is never shown or logged)."""
    form = await request.form()
    name, role = str(form.get("name", "")).strip(), str(form.get("role", ""))
    try:
        async with sessions(request).begin() as session:
            await add_account(session, name, str(form.get("password", "")), role, actor=viewer.name)
    except AccountError as exc:
        return await _accounts_page(request, error=str(exc), status_code=400)
    return await _accounts_page(request, message=f"Account {name} ({role}) created.")


async def _change(request: Request, viewer: Viewer, action: str) -> Response:
    """Disable or unlock the account named in the path."""
    name = str(request.path_params["name"])
    if action == "disable" and name == viewer.name:
        return await _accounts_page(request, error="You cannot disable your own account.", status_code=400)
    change = disable_account if action == "disable" else unlock_account
    try:
        async with sessions(request).begin() as session:
            await change(session, name, actor=viewer.name)
    except AccountError as exc:
        return await _accounts_page(request, error=str(exc), status_code=404)
    return RedirectResponse("/accounts", status_code=303)


@requires("admin")
async def account_disable(request: Request, viewer: Viewer) -> Response:
    """Disable an account and end its sessions."""
    return await _change(request, viewer, "disable")


@requires("admin")
async def account_unlock(request: Request, viewer: Viewer) -> Response:
    """Clear an account's failed-login lock."""
    return await _change(request, viewer, "unlock")
