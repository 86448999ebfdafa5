"""Login and logout."""

from __future__ import annotations

import secrets

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from bot.console.login import attempt_login
from bot.console.security import CSRF_FIELD, LoginLimiter, client_key, csrf_ok, safe_next
from bot.console.web import Viewer, refuse, render, requires, sessions
from storage.repositories.accounts import LOCK_DURATION, MAX_FAILED_LOGINS, LoginResult, end_sessions

# One message for every failure: it must not tell an existing (locked) name from an unknown one.
FAILED_MESSAGE = (
    f"Wrong name or password. After {MAX_FAILED_LOGINS} failed attempts in a row an account is "
    f"locked for {int(LOCK_DURATION.total_seconds() // 60)} minutes; an admin can unlock it sooner."
)


async def login_page(request: Request) -> Response:
    """The login form."""
    return render(request, "login.html", {"next": safe_next(request.query_params.get("next"))})


def _start_session(request: Request, result: LoginResult) -> None:
    """A new session for the account (old session data dropped: no fixation)."""
    assert result.account is not None
    request.session.clear()
    request.session["account_id"] = result.account.id
    request.session["epoch"] = result.account.session_epoch
    request.session[CSRF_FIELD] = secrets.token_urlsafe(32)


def _failed(request: Request, target: str) -> Response:
    """The login form again, the same for every failure (never which part was wrong, nor a lock)."""
    return render(request, "login.html", {"next": target, "error": FAILED_MESSAGE}, 401)


async def login(request: Request) -> Response:
    """Check the form (CSRF, rate limit, password) and start a session."""
    form = await request.form()
    if not csrf_ok(request, form):
        return refuse(request, 403, "The form has expired or was not sent from this console. Reload it.")
    limiter: LoginLimiter = request.app.state.login_limiter
    if not await limiter.allow(sessions(request), client_key(request)):
        return refuse(request, 429, "Too many login attempts from here. Wait a few minutes.")
    name, password = str(form.get("name", "")).strip(), str(form.get("password", ""))
    target = safe_next(str(form.get("next", "/")))
    result = await attempt_login(sessions(request), name, password)
    if not result.ok:
        return _failed(request, target)
    _start_session(request, result)
    return RedirectResponse(target, status_code=303)


@requires("reviewer")
async def logout(request: Request, viewer: Viewer) -> Response:
    """End every session of the account and go back to the login page."""
    async with sessions(request).begin() as session:
        await end_sessions(session, viewer.id)
    request.session.clear()
    return RedirectResponse("/login", status_code=303)
