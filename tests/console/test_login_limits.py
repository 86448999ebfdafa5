"""Console logins under attack, on SQLite and PostgreSQL: parallel guesses, forged proxy headers,
probing for account names, odd query values and the error page.

Parallel requests go to a real uvicorn configured as ``meditron-bot admin`` configures it.
"""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.applications import Starlette

from bot.console import create_app
from bot.console.app import SERVER_ERROR_MESSAGE
from bot.console.security import LoginLimiter, security_headers
from bot.console.settings import ConsoleSettings
from storage.db import make_engine, make_sessionmaker
from storage.models import LoginLimit, utcnow
from storage.repositories.accounts import MAX_FAILED_LOGINS, get_account
from storage.repositories.login_limits import client_hash, count_login_attempt
from tests.console.browser import admin_console, cli_env
from tests.console.helpers import (
    ADMIN,
    REVIEWER,
    SECRET,
    Seeded,
    audit_rows,
    client_for,
    csrf_of,
    login,
    served,
)

PARALLEL = 2 * MAX_FAILED_LOGINS


async def _post_login(
    http: httpx.AsyncClient, name: str, password: str, forwarded_for: str | None = None
) -> httpx.Response:
    """The login form, sent with an ``X-Forwarded-For`` header when given."""
    page = await http.get("/login")
    form = {"csrf": csrf_of(page.text), "name": name, "password": password, "next": "/"}
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    return await http.post("/login", data=form, headers=headers)


async def test_parallel_wrong_passwords_lock_the_account(
    sessionmaker: async_sessionmaker[AsyncSession], accounts: None
) -> None:
    limiter = LoginLimiter(attempts=100, window_s=300)  # the account lock is under test, not this
    app = create_app(sessionmaker, secret_key=SECRET, https=False, login_limiter=limiter)
    async with served(app) as base:
        # argon2 takes ~1 s per check on a loaded 2-core box, and they queue for the thread pool
        clients = [httpx.AsyncClient(base_url=base, timeout=60) for _ in range(PARALLEL)]
        try:
            tokens = [csrf_of((await http.get("/login")).text) for http in clients]
            responses = await asyncio.gather(
                *(
                    http.post("/login", data={"csrf": token, "name": REVIEWER[0], "password": f"wrong-{i}"})
                    for i, (http, token) in enumerate(zip(clients, tokens, strict=True))
                )
            )
        finally:
            for http in clients:
                await http.aclose()
        async with httpx.AsyncClient(base_url=base) as owner:
            right = await login(owner, *REVIEWER)
    assert [response.status_code for response in responses] == [401] * PARALLEL
    assert right.status_code == 401  # locked: the right password is not even checked
    async with sessionmaker() as session:
        account = await get_account(session, REVIEWER[0])
    assert account is not None and account.locked_until is not None and account.locked_until > utcnow()
    assert account.failed_logins == 0  # the lock reset the run; the refused attempts were not counted
    assert len(await audit_rows(sessionmaker, "account.locked")) == 1


def _without_token(response: httpx.Response) -> tuple[int, str]:
    """Status and page with the per-session CSRF token blanked."""
    return response.status_code, re.sub(r'name="csrf" value="[^"]+"', 'name="csrf" value=""', response.text)


async def test_a_locked_account_answers_like_an_unknown_name(app: Starlette) -> None:
    async with client_for(app) as http:
        for attempt in range(MAX_FAILED_LOGINS):
            await _post_login(http, REVIEWER[0], f"wrong-{attempt}")
        locked = await _post_login(http, *REVIEWER)  # the right password, on the locked account
        unknown = await _post_login(http, "nobody-here", "some-password-1")
        wrong = await _post_login(http, ADMIN[0], "not-the-admin-password")
    assert _without_token(locked) == _without_token(unknown) == _without_token(wrong)
    assert locked.status_code == 401 and "Wrong name or password" in locked.text


async def test_forwarded_for_is_ignored_unless_a_proxy_is_configured(
    sessionmaker: async_sessionmaker[AsyncSession], accounts: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "*")  # uvicorn's own default must not apply either
    limiter = LoginLimiter(attempts=3, window_s=300)
    app = create_app(sessionmaker, secret_key=SECRET, https=False, login_limiter=limiter)
    async with served(app, ConsoleSettings().proxies) as base, httpx.AsyncClient(base_url=base) as http:
        codes = [(await _post_login(http, "x-" + str(i), "pw", f"10.0.0.{i}")).status_code for i in range(4)]
    assert codes == [401, 401, 401, 429]


async def test_a_configured_proxy_says_who_the_client_is(
    sessionmaker: async_sessionmaker[AsyncSession], accounts: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONSOLE_TRUSTED_PROXIES", "127.0.0.1, ::1")
    limiter = LoginLimiter(attempts=3, window_s=300)
    app = create_app(sessionmaker, secret_key=SECRET, https=False, login_limiter=limiter)
    async with served(app, ConsoleSettings().proxies) as base, httpx.AsyncClient(base_url=base) as http:
        spread = [(await _post_login(http, "x-" + str(i), "pw", f"10.0.0.{i}")).status_code for i in range(4)]
        one = [(await _post_login(http, "y-" + str(i), "pw", "10.9.9.9")).status_code for i in range(4)]
    assert spread == [401] * 4
    assert one == [401, 401, 401, 429]


async def test_two_console_processes_share_one_login_limit(
    migrated_db_url: str, accounts: None, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """Two consoles on one database (each with its own engine, as two processes): one count per client."""
    engines = [make_engine(migrated_db_url) for _ in range(2)]
    try:
        apps = [
            create_app(
                make_sessionmaker(e), secret_key=SECRET, https=False, login_limiter=LoginLimiter(3, 300)
            )
            for e in engines
        ]
        async with client_for(apps[0]) as first, client_for(apps[1]) as second:
            codes = [
                (await _post_login(http, "x", "pw")).status_code for http in (first, second, first, second)
            ]
    finally:
        for engine in engines:
            await engine.dispose()
    assert codes == [401, 401, 401, 429]
    async with sessionmaker() as session:  # the client's address is not stored, only its sha256
        rows = (await session.execute(select(LoginLimit.client_sha256, LoginLimit.attempts))).all()
    assert rows == [(client_hash("127.0.0.1"), 3)]


async def test_a_full_window_refuses_until_it_ends(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    start = utcnow()
    window = timedelta(seconds=300)
    results = []
    for offset in (0, 10, 20, 299, 300, 301):
        async with sessionmaker.begin() as session:
            moment = start + timedelta(seconds=offset)
            results.append(await count_login_attempt(session, "10.1.1.1", 3, window, moment))
    assert results == [True, True, True, False, True, True]  # a new window from 300 s


@pytest.mark.parametrize("value", ["*", "proxy.example", "10.0.0.300"])
def test_trusted_proxies_must_be_addresses(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONSOLE_TRUSTED_PROXIES", f"127.0.0.1,{value}")
    with pytest.raises(ValidationError, match="is not an IP address or network"):
        ConsoleSettings()


def test_no_proxy_is_trusted_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CONSOLE_TRUSTED_PROXIES", raising=False)
    assert ConsoleSettings(_env_file=None).proxies == ()  # type: ignore[call-arg]
    monkeypatch.setenv("CONSOLE_TRUSTED_PROXIES", "10.1.0.0/16 192.168.1.5")
    assert ConsoleSettings(_env_file=None).proxies == ("10.1.0.0/16", "192.168.1.5")  # type: ignore[call-arg]


ODD_PAGES = ["٣", "²", "２", "1" * 20, "9" * 7, "-1", "", "0", "+2", " 2", "1e3", "%00", "1%00"]


@pytest.mark.parametrize("path", ["/conversations", "/audit", "/consent"])
async def test_odd_page_values_show_the_first_page(
    reviewer: httpx.AsyncClient, seeded: Seeded, path: str
) -> None:
    for value in ODD_PAGES:
        response = await reviewer.get(f"{path}?page={value}")
        assert response.status_code == 200, value
        assert "page 1 of 1" in response.text, value


async def test_odd_filters_and_ids_get_a_page_not_an_error(
    reviewer: httpx.AsyncClient, seeded: Seeded
) -> None:
    for query in ("lang=%00", "lang=" + "e" * 300, "from=9999-12-31&to=9999-12-31", "to=9999-12-31"):
        response = await reviewer.get(f"/conversations?{query}")
        assert response.status_code == 200, query
    for question_id in ("%00abc", "x" * 200, "%D9%A3"):
        response = await reviewer.get(f"/conversations/{question_id}")
        assert response.status_code == 404, question_id
        assert "no research conversation with this id" in response.text


async def test_odd_admin_input_gets_a_kind_refusal(admin: httpx.AsyncClient) -> None:
    token = csrf_of((await admin.get("/export")).text)
    far = {"csrf": token, "since": "9999-12-31", "until": "9999-12-31", "format": "csv"}
    assert (await admin.post("/export", data=far)).status_code == 400
    refused = await admin.post("/accounts/a%00b/unlock", data={"csrf": token})
    assert refused.status_code == 404 and "no account called" in refused.text


async def test_a_server_error_page_carries_the_security_headers(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'never-migrated.db'}")  # no tables at all
    try:
        app = create_app(make_sessionmaker(engine), secret_key=SECRET, https=True)
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="https://console.test") as http:
            ok = await http.get("/login")
            form = {"csrf": csrf_of(ok.text), "name": REVIEWER[0], "password": REVIEWER[1]}
            failed = await http.post("/login", data=form)
    finally:
        await engine.dispose()
    assert failed.status_code == 500
    for name, value in security_headers(https=True).items():
        assert failed.headers[name] == value == ok.headers[name]
    assert SERVER_ERROR_MESSAGE in failed.text
    assert "Traceback" not in failed.text and "review_accounts" not in failed.text


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(("trusted", "limited"), [("", True), ("127.0.0.1", False)])
async def test_the_admin_command_believes_forwarded_for_only_from_configured_proxies(
    migrated_db_url: str, tmp_path: Path, trusted: str, limited: bool
) -> None:
    env = {**cli_env(tmp_path, migrated_db_url), "CONSOLE_TRUSTED_PROXIES": trusted}
    env.pop("FORWARDED_ALLOW_IPS", None)  # uvicorn alone would trust 127.0.0.1
    async with admin_console(env) as base, httpx.AsyncClient(base_url=base) as http:
        attempts = LoginLimiter().attempts + 1
        codes = [
            (await _post_login(http, f"n-{i}", "pw", f"10.0.1.{i}")).status_code for i in range(attempts)
        ]
    assert (codes[-1] == 429) is limited and codes[:-1] == [401] * (attempts - 1)
