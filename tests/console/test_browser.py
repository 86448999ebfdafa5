"""The console in headless Debian Chromium (Playwright, no browser download) against `meditron-bot admin`.

Fails when Chromium or Playwright is missing under CI (env CI set); skips only outside CI.
Screenshots go to tmp_path, and also to $CONSOLE_SHOTS_DIR when that is set (to look at them).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.console.browser import (
    add_user,
    admin_console,
    chromium_page,
    cli_env,
    keep,
    require_browser,
    sign_in,
)
from tests.console.helpers import REVIEWER, Seeded


@pytest.fixture
async def console_url(migrated_db_url: str, seeded: Seeded, tmp_path: Path) -> AsyncIterator[str]:
    """`meditron-bot admin` on a free port, with a reviewer made by `admin add-user`, on the bot's data."""
    require_browser()
    env = cli_env(tmp_path, migrated_db_url)
    await add_user(env, REVIEWER, "reviewer")
    async with admin_console(env) as url:
        yield url


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_a_reviewer_logs_in_reads_a_conversation_and_sees_the_audit_status(
    console_url: str, seeded: Seeded, tmp_path: Path
) -> None:
    shots: list[Path] = []
    async with chromium_page(tmp_path / "profile", viewport={"width": 1100, "height": 800}) as page:

        async def shot(name: str) -> None:
            path = tmp_path / f"console-{name}.png"
            await page.screenshot(path=str(path), full_page=True)
            assert path.stat().st_size > 5_000
            shots.append(path)

        await page.goto(f"{console_url}/conversations")
        assert "/login" in page.url
        await shot("login")
        await sign_in(page, REVIEWER)
        await page.wait_for_url("**/conversations")
        assert await page.locator("tbody tr").count() == 3
        await shot("conversations")

        await page.click("text=How to treat fever number 1?")
        question_id = seeded.research_ids[1]
        await page.wait_for_url(f"**/conversations/{question_id}")
        assert await page.inner_text("#question-text") == "How to treat fever number 1?"
        assert (await page.inner_text("#answer-text")).strip() == seeded.answers[question_id].strip()
        await shot("conversation")

        await page.click("nav >> text=Audit log")
        await page.wait_for_url("**/audit")
        status = await page.inner_text("#chain-status")
        assert "Chain verified" in status
        assert await page.locator("td", has_text="review.read").count() == 1
        await shot("audit")

        await page.click("nav >> text=Statistics")
        await page.wait_for_url("**/stats")
        assert await page.locator("svg.chart").count() == 2
        await shot("stats")

        await page.set_viewport_size({"width": 390, "height": 844})
        await page.goto(f"{console_url}/conversations/{seeded.research_ids[0]}")
        assert await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
        await shot("phone-conversation")
    keep(shots)
