"""A clinician claims and answers a case from a phone: headless Debian Chromium at 390 px against
`meditron-bot admin`, on the data and Redis of the real bot, which delivers the reply. The case is a
follow-up: its page shows the conversation's earlier turn as a thread before the question.

Fails when Chromium or Playwright is missing under CI (env CI set); skips only outside CI.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.flows.handover import reply_text
from tests.console.browser import chromium_page, keep, require_browser, sign_in
from tests.console.helpers import CLINICIAN
from tests.console.test_handover_e2e import ADA
from tests.support.consent import give_consent
from tests.support.handover import agreement, choose, with_button
from tests.support.stack import Stack, inprocess_worker, polling_bot
from tests.support.telegram_stub import says
from tests.test_conversation_e2e import ask

PHONE = {"width": 390, "height": 844}


@pytest.fixture
def console_url(clinician_console: str) -> str:
    """`meditron-bot admin` with a clinician made by `admin add-user`, on the bot's data (conftest)."""
    require_browser()
    return clinician_console


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_a_clinician_claims_and_replies_from_a_phone(
    stack: Stack, console_url: str, tmp_path: Path, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    stub, shots = stack.stub, []
    first = "My baby is 3 months old and feels hot."
    question = "Is a fever of 39 in a 3-month-old baby urgent?"
    async with polling_bot(stack), inprocess_worker(stack):
        await give_consent(stack.stub, ADA, "both")
        await ask(stack, sessionmaker, first, ADA)  # answered: the follow-up's earlier turn
        before = len(stub.calls)
        stub.push_message(question, user_id=ADA)
        await stub.wait_for("sendMessage", says("in the queue", ADA), since=before)
        await choose(stack.stub, ADA, await agreement(stack.stub, ADA), "yes")

        profile = tmp_path / "profile"
        async with chromium_page(profile, viewport=PHONE, is_mobile=True, has_touch=True) as page:

            async def shot(name: str) -> None:
                path = tmp_path / f"handover-{name}.png"
                await page.screenshot(path=str(path), full_page=True)
                assert path.stat().st_size > 5_000
                shots.append(path)
                fits = "document.documentElement.scrollWidth <= window.innerWidth + 1"
                assert await page.evaluate(fits), f"{name} is wider than the phone"

            await page.goto(f"{console_url}/")
            await sign_in(page, CLINICIAN)
            await page.wait_for_url("**/cases")
            assert await page.locator("ul.cases li").count() == 1
            assert await page.locator("nav >> text=Conversations").count() == 0
            await shot("cases")

            await page.click("ul.cases a")
            await page.wait_for_url("**/cases/*")
            assert await page.inner_text("#question-text") == question
            assert await page.inner_text("#earlier-1 .asked") == first
            thread, asked = (
                await page.locator("#earlier").bounding_box(),
                await page.locator("#question-text").bounding_box(),
            )
            assert thread is not None and asked is not None and thread["y"] + thread["height"] <= asked["y"]
            assert thread["x"] >= 0 and thread["x"] + thread["width"] <= PHONE["width"]
            await shot("case")
            await page.click("#claim")
            await page.wait_for_selector("#reply")
            assert (await page.inner_text("#status")).startswith("claimed")
            box = await page.locator("#reply").bounding_box()
            assert box is not None and box["width"] >= PHONE["width"] * 0.75  # a textarea to type in
            reply = "Yes: a fever in a baby under 3 months needs a clinic today.\nKeep feeding."
            await page.fill("#reply", reply)
            await shot("reply")
            await page.click("#preview")
            await page.wait_for_selector("#preview-text")
            assert await page.inner_text("#preview-text") == reply_text("en", reply)
            await shot("preview")

            before = len(stub.calls)
            await page.click("#send")
            await page.wait_for_url("**/cases?sent=*")
            assert await page.locator("#sent").count() == 1
            await shot("sent")
        delivered = await stub.wait_for("sendMessage", with_button("hv:up:", ADA), since=before)
        assert delivered[0].params["text"] == reply_text("en", reply)
    keep(shots)
