"""The console in headless Debian Chromium (Playwright, no browser download) against `meditron-bot admin`.

Fails when Chromium or Playwright is missing under CI (env CI set); skips only outside CI.
Screenshots go to tmp_path, and also to $CONSOLE_SHOTS_DIR when that is set (to look at them).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import sys
from asyncio.subprocess import DEVNULL, PIPE
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.console.helpers import REVIEWER, Seeded
from tests.support.stack import PSEUDONYM_KEY

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _require_browser() -> None:
    """Fail under CI, skip elsewhere, when Chromium or Playwright is missing."""
    problem = None
    if not CHROMIUM.exists():
        problem = f"{CHROMIUM} is missing (apt-get install chromium)"
    else:
        try:
            import playwright.async_api  # noqa: F401
        except ImportError:
            problem = "the playwright package is missing (pip install playwright; no browser download needed)"
    if problem is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"browser test needs Chromium in CI: {problem}")
    pytest.skip(problem)


def _free_port() -> int:
    """A port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _cli_env(tmp_path: Path, database_url: str) -> dict[str, str]:
    """The environment a user would have: a data directory and the database."""
    env = {**os.environ, "DATA_DIR": str(tmp_path / "data"), "DATABASE_URL": database_url}
    env["PSEUDONYM_KEY"] = PSEUDONYM_KEY  # the bot's key: it keys and anchors the audit chain
    env.pop("CONSOLE_SECRET_KEY", None)
    return env


async def _run_cli(args: list[str], env: dict[str, str], stdin: str) -> tuple[int, str]:
    """Run ``meditron-bot`` with ``stdin``; return its exit status and stderr."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot.cli", *args, env=env, stdin=PIPE, stdout=DEVNULL, stderr=PIPE
    )
    _, stderr = await process.communicate(stdin.encode())
    return int(process.returncode or 0), stderr.decode()


async def _wait_until_listening(process: asyncio.subprocess.Process) -> None:
    """Read the server's log until uvicorn says it listens (fail if it exits first)."""
    assert process.stderr is not None
    seen = []
    async with asyncio.timeout(60):
        while True:
            line = (await process.stderr.readline()).decode()
            seen.append(line)
            if "Uvicorn running on" in line:
                return
            if not line:
                pytest.fail("the console did not start:\n" + "".join(seen))


@pytest.fixture
async def console_url(migrated_db_url: str, seeded: Seeded, tmp_path: Path) -> AsyncIterator[str]:
    """`meditron-bot admin` on a free port, with a reviewer made by `admin add-user`, on the bot's data."""
    _require_browser()
    env = _cli_env(tmp_path, migrated_db_url)
    status, stderr = await _run_cli(
        ["admin", "add-user", REVIEWER[0], "--role", "reviewer"], env, REVIEWER[1]
    )
    assert status == 0, stderr
    port = _free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot.cli", "admin", "--port", str(port), env=env, stdout=DEVNULL, stderr=PIPE
    )
    try:
        await _wait_until_listening(process)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        await process.communicate()


def _keep(shots: list[Path]) -> None:
    """Copy the screenshots to $CONSOLE_SHOTS_DIR, if set."""
    target = os.environ.get("CONSOLE_SHOTS_DIR")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        for shot in shots:
            shutil.copy(shot, Path(target) / shot.name)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_a_reviewer_logs_in_reads_a_conversation_and_sees_the_audit_status(
    console_url: str, seeded: Seeded, tmp_path: Path
) -> None:
    from playwright.async_api import async_playwright

    shots: list[Path] = []
    async with async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": 1100, "height": 800},
        )
        page = context.pages[0] if context.pages else await context.new_page()

        async def shot(name: str) -> None:
            path = tmp_path / f"console-{name}.png"
            await page.screenshot(path=str(path), full_page=True)
            assert path.stat().st_size > 5_000
            shots.append(path)

        await page.goto(f"{console_url}/conversations")
        assert "/login" in page.url
        await shot("login")
        await page.fill("#name", REVIEWER[0])
        await page.fill("#password", REVIEWER[1])
        await page.click("button[type=submit]")
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
        await context.close()
    _keep(shots)
