"""HTTP tests of the review console, on SQLite and PostgreSQL (the ``sessionmaker`` fixture)."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from markupsafe import escape
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.applications import Starlette

from bot.console import create_app
from bot.console.health import redis_probe
from bot.console.security import LoginLimiter
from storage.models import AuditEvent, utcnow
from storage.queue import Queue
from storage.queue.messages import QuestionMessage
from storage.repositories.accounts import MAX_FAILED_LOGINS, disable_account, get_account
from storage.repositories.export import EXPORT_FIELDS
from storage.settings import StorageSettings
from tests.console.helpers import (
    ADMIN,
    REVIEWER,
    SECRET,
    Seeded,
    audit_count,
    audit_rows,
    client_for,
    csrf_of,
    login,
    sha256,
)
from tests.console.seeding import FEEDBACK_REASON, produce, question_text
from tests.support.stack import Stack

PROTECTED = ["/", "/conversations", "/conversations/q0000research", "/audit", "/consent", "/stats"]
ADMIN_ONLY = ["/export", "/accounts"]


@pytest.mark.parametrize("path", PROTECTED + ADMIN_ONLY)
async def test_anonymous_requests_go_to_the_login_page(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path, follow_redirects=True)
    assert response.url.path == "/login"
    assert "Log in" in response.text
    assert '<input id="password"' in response.text


async def test_anonymous_post_is_sent_to_login_and_exports_nothing(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    response = await client.post("/export", data={"since": "2026-01-01", "until": "2026-12-31"})
    assert response.status_code == 303
    assert response.headers["location"].startswith("/login?next=")
    assert await audit_rows(sessionmaker, "export.created") == []


async def test_login_redirects_back_to_the_page_asked_for(client: httpx.AsyncClient) -> None:
    first = await client.get("/audit")
    login_page = await client.get(first.headers["location"])
    assert 'name="next" value="/audit"' in login_page.text
    form = {"csrf": csrf_of(login_page.text), "name": REVIEWER[0], "password": REVIEWER[1], "next": "/audit"}
    response = await client.post("/login", data=form)
    assert (response.status_code, response.headers["location"]) == (303, "/audit")
    assert "Chain verified" in (await client.get("/audit")).text


async def test_login_never_redirects_to_another_site(client: httpx.AsyncClient) -> None:
    page = await client.get("/login")
    form = {
        "csrf": csrf_of(page.text),
        "name": REVIEWER[0],
        "password": REVIEWER[1],
        "next": "//evil.example/x",
    }
    response = await client.post("/login", data=form)
    assert response.headers["location"] == "/"


@pytest.mark.parametrize("path", ADMIN_ONLY)
async def test_a_reviewer_cannot_reach_admin_pages(reviewer: httpx.AsyncClient, path: str) -> None:
    response = await reviewer.get(path)
    assert response.status_code == 403
    assert "admin role only" in response.text


async def test_a_reviewer_cannot_export_even_with_a_valid_form(
    reviewer: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession], seeded: Seeded
) -> None:
    token = csrf_of((await reviewer.get("/conversations")).text)
    form = {"csrf": token, "since": "2026-11-01", "until": "2026-11-30", "format": "csv"}
    response = await reviewer.post("/export", data=form)
    assert response.status_code == 403
    assert await audit_rows(sessionmaker, "export.created") == []


async def test_the_admin_reaches_admin_pages_and_the_reviewer_nav_hides_them(
    admin: httpx.AsyncClient,
) -> None:
    for path in ADMIN_ONLY:
        assert (await admin.get(path)).status_code == 200
    assert 'href="/export"' in (await admin.get("/conversations")).text


async def test_reviewer_navigation_has_no_admin_links(reviewer: httpx.AsyncClient) -> None:
    page = await reviewer.get("/conversations")
    assert page.status_code == 200
    assert 'href="/export"' not in page.text and 'href="/accounts"' not in page.text


async def test_a_form_without_the_csrf_token_is_refused(
    admin: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    form = {"name": "mallory", "role": "admin", "password": "a-long-password-1"}
    missing = await admin.post("/accounts/add", data=form)
    forged = await admin.post("/accounts/add", data={**form, "csrf": "forged"})
    assert missing.status_code == forged.status_code == 403
    async with sessionmaker() as session:
        assert await get_account(session, "mallory") is None
    token = csrf_of((await admin.get("/accounts")).text)
    accepted = await admin.post("/accounts/add", data={**form, "csrf": token})
    assert accepted.status_code == 200 and "Account mallory (admin) created" in accepted.text


async def test_the_login_form_needs_the_csrf_token(client: httpx.AsyncClient) -> None:
    await client.get("/login")
    response = await client.post("/login", data={"name": REVIEWER[0], "password": REVIEWER[1]})
    assert response.status_code == 403
    assert (await client.get("/conversations")).status_code == 303  # still anonymous


async def test_logout_needs_the_csrf_token(reviewer: httpx.AsyncClient) -> None:
    assert (await reviewer.post("/logout", data={})).status_code == 403
    assert (await reviewer.get("/conversations")).status_code == 200


async def test_wrong_passwords_lock_the_account(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    for attempt in range(1, MAX_FAILED_LOGINS + 1):
        response = await login(client, REVIEWER[0], f"wrong-{attempt}")
        assert response.status_code == 401 and "Wrong name or password" in response.text
    right = await login(client, *REVIEWER)
    assert right.status_code == 401 and "Wrong name or password" in right.text  # same words as any failure
    assert (await client.get("/conversations")).status_code == 303
    async with sessionmaker() as session:
        account = await get_account(session, REVIEWER[0])
    assert account is not None and account.locked_until is not None and account.locked_until > utcnow()
    assert [row.subject for row in await audit_rows(sessionmaker, "account.locked")] == [REVIEWER[0]]


async def test_an_admin_unlocks_a_locked_account(
    app: Starlette, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with client_for(app) as intruder, client_for(app) as admin:
        for attempt in range(MAX_FAILED_LOGINS):
            await login(intruder, REVIEWER[0], f"wrong-{attempt}")
        assert (await login(admin, *ADMIN)).status_code == 303
        accounts = await admin.get("/accounts")
        assert "locked until" in accounts.text
        await admin.post(f"/accounts/{REVIEWER[0]}/unlock", data={"csrf": csrf_of(accounts.text)})
        assert (await login(intruder, *REVIEWER)).status_code == 303


async def test_login_attempts_are_rate_limited_per_client(
    sessionmaker: async_sessionmaker[AsyncSession], accounts: None
) -> None:
    app = create_app(sessionmaker, secret_key=SECRET, https=False, login_limiter=LoginLimiter(3, 300))
    async with client_for(app) as http:
        codes = [(await login(http, f"nobody{index}", "whatever-password")).status_code for index in range(4)]
        assert codes == [401, 401, 401, 429]
        assert (await login(http, *REVIEWER)).status_code == 429


async def test_reading_a_conversation_adds_an_audit_event(
    reviewer: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession], seeded: Seeded
) -> None:
    question_id = seeded.research_ids[1]  # 👍 without a reason: only the question and answer are read
    before = await audit_count(sessionmaker)
    page = await reviewer.get(f"/conversations/{question_id}")
    assert page.status_code == 200
    assert question_text(1) in page.text and str(escape(seeded.answers[question_id])) in page.text
    assert len(seeded.model_sha256) == 64 and seeded.model_sha256 in page.text
    # The second private question follows up the first: the page shows them as one thread.
    assert 'id="thread"' in page.text and question_text(0) in page.text and question_text(2) not in page.text
    reads = await audit_rows(sessionmaker, "review.read")
    assert [row.subject for row in reads] == [question_id]
    assert json.loads(reads[0].payload) == {
        "actor": REVIEWER[0],
        "read": ["question", "answer"],
        "role": "reviewer",
        "thread": [seeded.research_ids[0]],
    }
    assert await audit_count(sessionmaker) == before + 1


async def test_the_conversation_list_is_audited_with_the_ids_shown(
    reviewer: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession], seeded: Seeded
) -> None:
    page = await reviewer.get("/conversations")
    assert "How to treat fever number 2?" in page.text
    (row,) = await audit_rows(sessionmaker, "review.list")
    assert sorted(json.loads(row.payload)["ids"]) == sorted(seeded.research_ids)


async def test_questions_without_research_consent_are_never_shown(
    reviewer: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession], seeded: Seeded
) -> None:
    assert seeded.private_id not in (await reviewer.get("/conversations")).text
    response = await reviewer.get(f"/conversations/{seeded.private_id}")
    assert response.status_code == 404
    assert await audit_rows(sessionmaker, "review.read") == []


async def test_reviewers_see_pseudonyms(reviewer: httpx.AsyncClient, seeded: Seeded) -> None:
    page = await reviewer.get(f"/conversations/{seeded.research_ids[0]}")
    assert seeded.pseudonym in page.text
    listing = await reviewer.get("/conversations")
    assert seeded.pseudonym[:10] in listing.text


async def test_conversation_filters(reviewer: httpx.AsyncClient, seeded: Seeded) -> None:
    french_group = seeded.research_ids[-1]
    by_language = (await reviewer.get("/conversations?lang=fr")).text
    assert french_group in by_language and seeded.research_ids[0] not in by_language
    by_chat = (await reviewer.get("/conversations?chat=private")).text
    assert french_group not in by_chat and seeded.research_ids[0] in by_chat
    today = utcnow().date()  # the bot stamped its questions now (a run across midnight UTC may fail)
    by_date = (await reviewer.get(f"/conversations?from={today + timedelta(days=1)}")).text
    assert "0 conversations" in by_date
    in_range = (await reviewer.get(f"/conversations?from={today}&to={today}")).text
    assert "3 conversations" in in_range


async def test_feedback_filters(reviewer: httpx.AsyncClient, seeded: Seeded) -> None:
    first, second, third = seeded.research_ids  # the researcher pressed 👎 on the first, 👍 on the second

    async def shown(query: str) -> set[str]:
        text = (await reviewer.get(f"/conversations?{query}")).text
        return {question_id for question_id in seeded.research_ids if question_id in text}

    assert await shown("feedback=down") == {first}
    assert await shown("feedback=up") == {second}
    assert await shown("feedback=none") == {third}
    assert await shown("flag=no") == {first, second, third}  # none of these had a danger sign
    assert await shown("flag=yes") == set()


async def test_the_conversation_page_shows_feedback_and_audits_the_reason(
    reviewer: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession], seeded: Seeded
) -> None:
    page = (await reviewer.get(f"/conversations/{seeded.research_ids[0]}")).text
    assert f"not helpful {FEEDBACK_REASON}" in page and "none recorded" in page
    (read,) = await audit_rows(sessionmaker, "review.read")
    assert json.loads(read.payload)["read"] == ["question", "answer", "feedback reason"]


async def test_conversations_are_paged(
    reviewer: httpx.AsyncClient, stack: Stack, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    seeded = await produce(stack, research_count=30, askers=6)  # its own data set, from the real bot
    first, second = (
        (await reviewer.get("/conversations")).text,
        (await reviewer.get("/conversations?page=2")).text,
    )
    assert "page 1 of 2" in first and "page 2 of 2" in second
    assert seeded.research_ids[-1] in first and seeded.research_ids[-1] not in second
    assert seeded.research_ids[0] in second and "older →" in first


async def test_the_audit_page_shows_the_chain_status_and_the_first_broken_row(
    reviewer: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession], seeded: Seeded
) -> None:
    page = await reviewer.get("/audit")
    assert "Chain verified" in page.text and "consent.changed" in page.text
    async with sessionmaker.begin() as session:  # a row added behind the chain's back (inserts are allowed)
        last = (
            await session.execute(select(AuditEvent).order_by(AuditEvent.id.desc()).limit(1))
        ).scalar_one()
        forged = AuditEvent(
            created_at=utcnow(),
            event="forged",
            subject=None,
            payload="{}",
            prev_hash=last.hash,
            hash="f" * 64,
        )
        session.add(forged)
    broken = await reviewer.get("/audit")
    assert f"Chain broken at row {forged.id}" in broken.text
    assert "Chain verified" not in broken.text


async def test_consent_and_statistics_pages(reviewer: httpx.AsyncClient, seeded: Seeded) -> None:
    consent = await reviewer.get("/consent")
    assert "granted" in consent.text and "declined" in consent.text and "research" in consent.text
    stats = await reviewer.get("/stats")
    assert stats.status_code == 200
    assert stats.text.count("<svg") == 2
    assert "Questions per day" in stats.text and "answered 4" in stats.text
    assert "No Redis configured" in stats.text


async def test_statistics_count_feedback(reviewer: httpx.AsyncClient, seeded: Seeded) -> None:
    stats = (await reviewer.get("/stats")).text
    assert "helpful 1 · not helpful 1 · 50% positive" in stats


async def test_statistics_show_queue_health_from_redis(
    sessionmaker: async_sessionmaker[AsyncSession], accounts: None, redis_url: str, queue: Queue
) -> None:
    await queue.ensure_groups()
    for index in range(2):
        message = QuestionMessage(
            question_id=f"health{index:04d}",
            chat_id=1,
            message_id=index,
            user="u" * 64,
            text="x",
            enqueued_at=0.0,
        )
        await queue.enqueue(message)
    await queue.read_questions("worker-under-test", count=1, block_ms=10)
    probe = redis_probe(redis_url, StorageSettings(queue_namespace=queue.names.namespace))
    app = create_app(sessionmaker, secret_key=SECRET, https=False, health=probe)
    async with client_for(app) as http:
        await login(http, *REVIEWER)
        page = (await http.get("/stats")).text
    assert "<dt>Questions waiting</dt><dd>2</dd>" in page
    assert "worker-under-test" in page and "working" in page


async def test_statistics_say_when_redis_cannot_be_read(
    sessionmaker: async_sessionmaker[AsyncSession], accounts: None, tmp_path: Path
) -> None:
    probe = redis_probe(f"unix://{tmp_path}/absent.sock", StorageSettings())
    app = create_app(sessionmaker, secret_key=SECRET, https=False, health=probe)
    async with client_for(app) as http:
        await login(http, *REVIEWER)
        page = (await http.get("/stats")).text
    assert "Redis cannot be read" in page


async def test_the_admin_downloads_an_audited_export(
    admin: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession], seeded: Seeded
) -> None:
    token, today = csrf_of((await admin.get("/export")).text), utcnow().date()  # the bot's data is today's
    form = {"csrf": token, "since": str(today), "until": str(today), "format": "csv"}
    response = await admin.post("/export", data=form)
    assert response.status_code == 200
    assert (
        response.headers["content-disposition"]
        == f'attachment; filename="meditron-research-{today}-{today}.csv"'
    )
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert tuple(rows[0]) == EXPORT_FIELDS
    assert sorted(row["question_id"] for row in rows) == sorted(seeded.research_ids)
    assert "secret" not in response.text
    (event,) = await audit_rows(sessionmaker, "export.created")
    payload = json.loads(event.payload)
    assert payload["actor"] == ADMIN[0] and payload["rows"] == 3
    assert payload["sha256"] == sha256(response.content) == response.headers["x-export-sha256"]


async def test_the_export_as_json_lines(admin: httpx.AsyncClient, seeded: Seeded) -> None:
    token, today = csrf_of((await admin.get("/export")).text), utcnow().date()
    since, until = today - timedelta(days=7), today + timedelta(days=7)
    form = {"csrf": token, "since": str(since), "until": str(until), "format": "jsonl"}
    response = await admin.post("/export", data=form)
    rows = [json.loads(line) for line in response.text.splitlines()]
    assert [row["question_id"] for row in rows] == seeded.research_ids
    assert [row["answer_text"] for row in rows] == [seeded.answers[key] for key in seeded.research_ids]
    assert rows[0]["total_s"] > 0 and rows[0]["consent_text_version"] == "en-2"
    assert rows[1]["conversation_id"] == rows[0]["conversation_id"] and rows[1]["conversation_turn"] == 2


async def test_a_bad_export_form_is_refused(
    admin: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    token = csrf_of((await admin.get("/export")).text)
    for since, until, fmt in (
        ("2026-11-30", "2026-11-01", "csv"),
        ("x", "2026-11-01", "csv"),
        ("2026-11-01", "2026-11-02", "xml"),
    ):
        form = {"csrf": token, "since": since, "until": until, "format": fmt}
        assert (await admin.post("/export", data=form)).status_code == 400
    assert await audit_rows(sessionmaker, "export.created") == []


async def test_logout_ends_the_session_even_for_a_copied_cookie(app: Starlette) -> None:
    async with client_for(app) as http:
        await login(http, *REVIEWER)
        stolen = dict(http.cookies)
        page = await http.get("/conversations")
        assert (await http.post("/logout", data={"csrf": csrf_of(page.text)})).status_code == 303
    async with client_for(app) as thief:
        thief.cookies.update(stolen)
        assert (await thief.get("/conversations")).status_code == 303


async def test_disabling_an_account_ends_its_sessions(
    reviewer: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    assert (await reviewer.get("/conversations")).status_code == 200
    async with sessionmaker.begin() as session:
        await disable_account(session, REVIEWER[0])
    assert (await reviewer.get("/conversations")).status_code == 303
    assert (await login(reviewer, *REVIEWER)).status_code == 401


async def test_an_admin_disables_an_account_from_the_page(
    admin: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    token = csrf_of((await admin.get("/accounts")).text)
    assert (await admin.post(f"/accounts/{REVIEWER[0]}/disable", data={"csrf": token})).status_code == 303
    assert (await admin.post(f"/accounts/{ADMIN[0]}/disable", data={"csrf": token})).status_code == 400
    async with sessionmaker() as session:
        account = await get_account(session, REVIEWER[0])
    assert account is not None and account.disabled
    assert [
        json.loads(row.payload)["actor"] for row in await audit_rows(sessionmaker, "account.disabled")
    ] == [ADMIN[0]]


async def test_cookies_and_security_headers(
    sessionmaker: async_sessionmaker[AsyncSession], accounts: None
) -> None:
    for https, base in ((False, "http://console.test"), (True, "https://console.test")):
        app = create_app(sessionmaker, secret_key=SECRET, https=https)
        async with client_for(app, base) as http:
            response = await login(http, *REVIEWER)
        cookie = response.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie
        assert ("secure" in cookie.split("; ")) is https
        assert (
            "script-src" not in response.headers["content-security-policy"]
        )  # default-src 'none': no scripts
        assert response.headers["cache-control"] == "no-store"
        assert ("strict-transport-security" in response.headers) is https


async def test_a_password_never_reaches_a_page_or_the_audit_log(
    admin: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    token = csrf_of((await admin.get("/accounts")).text)
    password = "an-unusual-password-77"
    page = await admin.post(
        "/accounts/add", data={"csrf": token, "name": "nina", "role": "reviewer", "password": password}
    )
    assert password not in page.text
    async with sessionmaker() as session:
        events = await audit_rows(sessionmaker, "account.created")
        account = await get_account(session, "nina")
    assert all(password not in event.payload for event in events)
    assert account is not None and account.password_hash.startswith("$argon2id$")
