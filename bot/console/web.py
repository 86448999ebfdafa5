"""What every page needs: the signed-in viewer, role checks, CSRF on forms and template rendering."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.templating import Jinja2Templates

from bot.console.security import csrf_ok, csrf_token
from storage.models import ReviewAccount

# Which account roles may open the pages of a role: admins everything, clinicians only the cases.
ALLOWED_ROLES = {
    "reviewer": frozenset({"reviewer", "admin"}),
    "admin": frozenset({"admin"}),
    "clinician": frozenset({"clinician", "admin"}),
}


@dataclass(frozen=True)
class Viewer:
    """The signed-in account, as pages see it."""

    id: int
    name: str
    role: str

    @property
    def is_admin(self) -> bool:
        """Whether the viewer manages accounts and may export."""
        return self.role == "admin"

    @property
    def reviews(self) -> bool:
        """Whether the viewer may read research conversations, the audit log and statistics."""
        return self.role in ALLOWED_ROLES["reviewer"]

    @property
    def answers_cases(self) -> bool:
        """Whether the viewer may open the clinicians' cases."""
        return self.role in ALLOWED_ROLES["clinician"]


Page = Callable[[Request, Viewer], Awaitable[Response]]
Endpoint = Callable[[Request], Awaitable[Response]]


def sessions(request: Request) -> async_sessionmaker[AsyncSession]:
    """The app's database session factory."""
    factory: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    return factory


def render(
    request: Request, template: str, context: dict[str, Any] | None = None, status_code: int = 200
) -> Response:
    """Render ``template`` with the viewer, the CSRF token and ``context``."""
    templates: Jinja2Templates = request.app.state.templates
    full = {"viewer": request.scope.get("viewer"), "csrf": csrf_token(request), **(context or {})}
    return templates.TemplateResponse(request, template, full, status_code=status_code)


def refuse(request: Request, status_code: int, message: str) -> Response:
    """An error page with ``message``."""
    return render(request, "error.html", {"status": status_code, "message": message}, status_code)


async def load_viewer(request: Request) -> Viewer | None:
    """The account of the session if it exists, is enabled and the session's epoch is current."""
    account_id, epoch = request.session.get("account_id"), request.session.get("epoch")
    if not isinstance(account_id, int) or not isinstance(epoch, int):
        return None
    async with sessions(request)() as session:
        account = await session.get(ReviewAccount, account_id)
    if account is None or account.disabled or account.session_epoch != epoch:
        request.session.clear()
        return None
    return Viewer(account.id, account.name, account.role)


def _to_login(request: Request) -> Response:
    """Send an anonymous visitor to the login page, remembering where they wanted to go."""
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)


def requires(role: str) -> Callable[[Page], Endpoint]:
    """Make a page need a signed-in viewer allowed ``role``'s pages; POSTs also need the CSRF token."""

    def decorate(page: Page) -> Endpoint:
        @functools.wraps(page)
        async def endpoint(request: Request) -> Response:
            viewer = await load_viewer(request)
            if viewer is None:
                return _to_login(request)
            request.scope["viewer"] = viewer
            if viewer.role not in ALLOWED_ROLES[role]:
                return refuse(request, 403, f"This page is for the {role} role only.")
            if request.method == "POST" and not csrf_ok(request, await request.form()):
                return refuse(request, 403, "The form has expired or was not sent from this console.")
            return await page(request, viewer)

        return endpoint

    return decorate
