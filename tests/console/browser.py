"""The console as a user reaches it: `meditron-bot admin` as a process, headless Debian Chromium, signing in.

Browser tests fail when Chromium or Playwright is missing under CI (env CI set) and skip only outside CI.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sys
from asyncio.subprocess import DEVNULL, PIPE
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.llama_server import free_port
from tests.support.stack import PSEUDONYM_KEY, LoggedProcess

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


def require_browser() -> None:
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


def cli_env(tmp_path: Path, database_url: str) -> dict[str, str]:
    """The environment a user would have: a data directory and the database."""
    env = {**os.environ, "DATA_DIR": str(tmp_path / "data"), "DATABASE_URL": database_url}
    env["PSEUDONYM_KEY"] = PSEUDONYM_KEY  # the bot's key: it keys and anchors the audit chain
    env.pop("CONSOLE_SECRET_KEY", None)
    return env


async def run_cli(args: list[str], env: dict[str, str], stdin: str) -> tuple[int, str]:
    """Run ``meditron-bot`` with ``stdin``; return its exit status and stderr."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot.cli", *args, env=env, stdin=PIPE, stdout=DEVNULL, stderr=PIPE
    )
    _, stderr = await process.communicate(stdin.encode())
    return int(process.returncode or 0), stderr.decode()


async def add_user(env: dict[str, str], account: tuple[str, str], role: str) -> None:
    """`meditron-bot admin add-user NAME --role ROLE`, the password on stdin."""
    status, stderr = await run_cli(["admin", "add-user", account[0], "--role", role], env, account[1])
    assert status == 0, stderr


@contextlib.asynccontextmanager
async def admin_console(env: dict[str, str]) -> AsyncIterator[str]:
    """`meditron-bot admin` on a free port, once uvicorn says it listens; its URL; stopped after."""
    port = free_port()
    process = await LoggedProcess.start(
        sys.executable, "-m", "bot.cli", "admin", "--port", str(port), env=env
    )
    try:
        await process.wait_for_line("Uvicorn running on")
        yield f"http://127.0.0.1:{port}"
    finally:
        await process.stop()


@contextlib.asynccontextmanager
async def chromium_page(profile: Path, **context: Any) -> AsyncIterator[Any]:
    """A page of headless Chromium with a profile of its own (``context``: viewport, is_mobile...)."""
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch_persistent_context(
            str(profile), executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS, **context
        )
        try:
            yield browser.pages[0] if browser.pages else await browser.new_page()
        finally:
            await browser.close()


async def sign_in(page: Any, account: tuple[str, str]) -> None:
    """Fill and send the login form the page shows."""
    await page.fill("#name", account[0])
    await page.fill("#password", account[1])
    await page.click("button[type=submit]")


def keep(shots: list[Path]) -> None:
    """Copy the screenshots to $CONSOLE_SHOTS_DIR, if set."""
    target = os.environ.get("CONSOLE_SHOTS_DIR")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        for shot in shots:
            shutil.copy(shot, Path(target) / shot.name)
