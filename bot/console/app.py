"""The review console's ASGI app: routes, signed session cookies, security headers, templates."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import jinja2
import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from bot.console import admin_views, auth_views, case_views, review_views
from bot.console.health import HealthProbe
from bot.console.outbox import ReplyOutbox
from bot.console.security import LoginLimiter, SecurityHeaders, security_headers
from bot.console.web import refuse

TEMPLATES = Path(__file__).parent / "templates"
SESSION_COOKIE = "meditron_console"
SESSION_MAX_AGE_S = 8 * 3600
SERVER_ERROR_MESSAGE = (
    "Something went wrong in the console. Try again later; if it keeps happening, tell the administrator."
)

log = structlog.get_logger("console")


def _when(value: datetime | None) -> str:
    """A UTC time as ``YYYY-MM-DD HH:MM:SS`` (empty for None)."""
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else ""


def _short(value: str | None, length: int = 12) -> str:
    """The first characters of a pseudonym or hash, followed by an ellipsis."""
    return f"{value[:length]}…" if value and len(value) > length else (value or "")


def _templates() -> Jinja2Templates:
    """Jinja2 with autoescaping and the console's filters."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True, undefined=jinja2.StrictUndefined
    )
    env.filters["when"] = _when
    env.filters["short"] = _short
    return Jinja2Templates(env=env)


ROUTES = [
    Route("/", review_views.home),
    Route("/login", auth_views.login_page, methods=["GET"]),
    Route("/login", auth_views.login, methods=["POST"]),
    Route("/logout", auth_views.logout, methods=["POST"]),
    Route("/conversations", review_views.conversation_list),
    Route("/conversations/{question_id}", review_views.conversation_detail),
    Route("/audit", review_views.audit_log),
    Route("/consent", review_views.consent_log),
    Route("/stats", review_views.statistics),
    Route("/cases", case_views.case_list),
    Route("/cases/{case_id}", case_views.case_detail),
    Route("/cases/{case_id}/claim", case_views.case_claim, methods=["POST"]),
    Route("/cases/{case_id}/preview", case_views.case_preview, methods=["POST"]),
    Route("/cases/{case_id}/send", case_views.case_send, methods=["POST"]),
    Route("/export", admin_views.export_form, methods=["GET"]),
    Route("/export", admin_views.export_download, methods=["POST"]),
    Route("/accounts", admin_views.accounts, methods=["GET"]),
    Route("/accounts/add", admin_views.account_add, methods=["POST"]),
    Route("/accounts/{name}/disable", admin_views.account_disable, methods=["POST"]),
    Route("/accounts/{name}/unlock", admin_views.account_unlock, methods=["POST"]),
]


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's 404/405 as the console's error page."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    return refuse(request, status, "This page does not exist." if status == 404 else "Not allowed.")


async def _server_error(request: Request, exc: Exception) -> Response:
    """An unexpected error: the error page with the security headers (this handler runs outside them).

    Only the exception's type is logged here; Starlette re-raises it for the server's log.
    """
    log.error("console.error", error=type(exc).__name__, path=request.url.path)
    templates: Jinja2Templates = request.app.state.templates
    context = {"viewer": None, "csrf": "", "status": 500, "message": SERVER_ERROR_MESSAGE}
    return templates.TemplateResponse(
        request, "error.html", context, status_code=500, headers=security_headers(request.app.state.https)
    )


def create_app(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    secret_key: str,
    https: bool,
    health: HealthProbe | None = None,
    login_limiter: LoginLimiter | None = None,
    outbox: ReplyOutbox | None = None,
) -> Starlette:
    """The console app on ``sessionmaker``; ``https`` marks cookies Secure and sends HSTS.

    ``outbox`` hands clinicians' replies to the bot (None: replies cannot be sent).
    """
    middleware = [
        Middleware(SecurityHeaders, https=https),
        Middleware(
            SessionMiddleware,
            secret_key=secret_key,
            session_cookie=SESSION_COOKIE,
            max_age=SESSION_MAX_AGE_S,
            same_site="strict",
            https_only=https,
        ),
    ]
    handlers = {HTTPException: _http_error, Exception: _server_error}
    app = Starlette(routes=ROUTES, middleware=middleware, exception_handlers=handlers)
    app.state.https = https
    app.state.sessionmaker = sessionmaker
    app.state.templates = _templates()
    app.state.health = health
    app.state.login_limiter = login_limiter or LoginLimiter()
    app.state.outbox = outbox
    return app
