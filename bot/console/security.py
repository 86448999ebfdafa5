"""Request guards: CSRF tokens, the login rate limiter and the security headers of every response."""

from __future__ import annotations

import secrets
from datetime import timedelta
from urllib.parse import urlsplit

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from storage.repositories.login_limits import count_login_attempt

CSRF_FIELD = "csrf"
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)


def csrf_token(request: Request) -> str:
    """The session's CSRF token (created on first use)."""
    token = request.session.get(CSRF_FIELD)
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        request.session[CSRF_FIELD] = token
    return token


def csrf_ok(request: Request, form: FormData) -> bool:
    """Whether the form carries the session's CSRF token."""
    expected = request.session.get(CSRF_FIELD)
    given = form.get(CSRF_FIELD)
    if not isinstance(expected, str) or not isinstance(given, str):
        return False
    return secrets.compare_digest(expected.encode(), given.encode())


def safe_next(target: str | None) -> str:
    """A local path to go to after login (never another site)."""
    if not target:
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return "/"
    return target


def client_key(request: Request) -> str:
    """The client address a rate limit counts against (X-Forwarded-For only from a trusted proxy)."""
    return request.client.host if request.client else "unknown"


class LoginLimiter:
    """At most ``attempts`` login attempts per client in ``window_s`` seconds from its first one.

    Counted in the database (``login_limits``), not in this process: every console process behind
    the same address shares the count. The console has no Redis (its settings name none), so the
    database it already uses holds it.
    """

    def __init__(self, attempts: int = 10, window_s: float = 300.0) -> None:
        self.attempts = attempts
        self.window_s = window_s

    async def allow(self, sessions: async_sessionmaker[AsyncSession], key: str) -> bool:
        """Count one attempt by ``key``; False when it is over the limit."""
        async with sessions.begin() as session:
            return await count_login_attempt(session, key, self.attempts, timedelta(seconds=self.window_s))


def security_headers(https: bool) -> dict[str, str]:
    """CSP, no-store, nosniff, no-referrer, no framing (and HSTS over HTTPS): on every response."""
    headers = {
        "content-security-policy": CONTENT_SECURITY_POLICY,
        "cache-control": "no-store",
        "x-content-type-options": "nosniff",
        "referrer-policy": "no-referrer",
        "x-frame-options": "DENY",
    }
    if https:
        headers["strict-transport-security"] = "max-age=31536000"
    return headers


class SecurityHeaders:
    """ASGI middleware adding ``security_headers`` to every response the routes give.

    Starlette's error middleware sits outside this one: the 500 handler adds the same headers itself.
    """

    def __init__(self, app: ASGIApp, *, https: bool) -> None:
        self.app = app
        self.headers = [(name.encode(), value.encode()) for name, value in security_headers(https).items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Add the headers to every HTTP response."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], *self.headers]
            await send(message)

        await self.app(scope, receive, send_with_headers)
