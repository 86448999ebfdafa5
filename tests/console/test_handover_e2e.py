"""Handover end to end: the real bot and worker against the Bot API stand-in, the console on the same data.

A user taps "Ask a clinician" and agrees; the case appears for a clinician, who claims it and
replies through the console; the bot delivers the reply (through a 429) once; the case closes and
the audit chain verifies. Declining opens nothing, reviewers get 403, an unclaimed case alerts the
on-call chat, /forget erases the case's texts.
"""

from __future__ import annotations

import contextlib
import re
from typing import Any

import httpx
from markupsafe import escape
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.console import create_app
from bot.console.outbox import redis_outbox
from bot.flows.handover import reply_text
from bot.telegram import texts
from bot.telegram.case_delivery import CaseDelivery
from storage.models import Case, ConsentEvent, ReviewAccount, Tombstone
from storage.queue import Delivery, queue_from_settings
from storage.queue.cases import CaseQueue, CaseReplyMessage
from storage.queue.connection import connect
from storage.repositories.accounts import add_account
from storage.repositories.audit import verify_chain
from storage.repositories.cases import claim_case, reply_case
from tests.console.helpers import ADMIN, CLINICIAN, REVIEWER, SECRET, audit_rows, client_for, csrf_of
from tests.support.consent import give_consent
from tests.support.handover import agreement, buttons, choose, with_button
from tests.support.stack import Stack, inprocess_worker, polling_bot
from tests.support.telegram_stub import says

ADA = 3001
ONCALL = -100777
DANGER = "My neighbour collapsed and is not breathing, what do I do"
Sessions = async_sessionmaker[AsyncSession]


async def _handed_over(stack: Stack, question: str) -> None:
    """Ada consents (research too), asks ``question``, sends /human and agrees: a case opens."""
    await give_consent(stack.stub, ADA, "both")
    before = len(stack.stub.calls)
    stack.stub.push_message(question, user_id=ADA)
    await stack.stub.wait_for("sendMessage", says("in the queue", ADA), since=before)
    await choose(stack.stub, ADA, await agreement(stack.stub, ADA), "yes")


def _case_delivery(app: Any) -> CaseDelivery:
    """The running bot's delivery loop of clinicians' replies."""
    return next(loop for loop in app.bot_data["deliveries"] if isinstance(loop, CaseDelivery))


async def _clinician_consents(session: AsyncSession) -> list[ConsentEvent]:
    query = select(ConsentEvent).where(ConsentEvent.scope == "clinician").order_by(ConsentEvent.id)
    return list((await session.execute(query)).scalars())


async def _cases(sessionmaker: Sessions) -> list[Case]:
    async with sessionmaker() as session:
        return list((await session.execute(select(Case).order_by(Case.id))).scalars())


async def _login(http: httpx.AsyncClient, name: str, password: str) -> None:
    page = await http.get("/login")
    form = {"csrf": csrf_of(page.text), "name": name, "password": password, "next": "/"}
    assert (await http.post("/login", data=form)).status_code == 303


async def _accounts(sessionmaker: Sessions) -> None:
    async with sessionmaker.begin() as session:
        await add_account(session, *REVIEWER, "reviewer")
        await add_account(session, *ADMIN, "admin")
        await add_account(session, *CLINICIAN, "clinician")


def _console(stack: Stack, sessionmaker: Sessions) -> httpx.AsyncClient:
    """The console as `meditron-bot admin` serves it, replies going to the bot's Redis."""
    outbox = redis_outbox(stack.redis_url, stack.storage)
    return client_for(create_app(sessionmaker, secret_key=SECRET, https=False, outbox=outbox))


async def test_a_clinician_answers_a_case_the_user_opened(stack: Stack, sessionmaker: Sessions) -> None:
    await _accounts(sessionmaker)
    stack.audit_anchor().attach(sessionmaker)
    stub = stack.stub
    question = "How much ORS for a 2-year-old with diarrhoea?"
    async with polling_bot(stack) as app, inprocess_worker(stack):
        await give_consent(stack.stub, ADA, "service")  # no research: the case texts go when it closes
        before = len(stub.calls)
        asked = stub.push_message(question, user_id=ADA)
        offered = with_button("hv:ask:", ADA)
        answer = (await stub.wait_for("sendMessage", offered, since=before, timeout=60))[-1]
        assert [b.rsplit(":", 1)[0] for b in buttons(answer)] == ["fb:up", "fb:down", "hv:ask"]
        prompt = await agreement(stub, ADA, answer)
        opened = await choose(stub, ADA, prompt, "yes")
        assert opened == texts.HANDOVER_OPENED.format(minutes=30)
        [case] = await _cases(sessionmaker)
        assert case.status == "open" and case.question_text == question and case.answer_text
        assert not case.danger

        async with _console(stack, sessionmaker) as http:
            await _login(http, *CLINICIAN)
            assert (await http.get("/")).headers["location"] == "/cases"
            assert (await http.get("/conversations")).status_code == 403
            listing = await http.get("/cases")
            assert f'href="/cases/{case.id}"' in listing.text and question not in listing.text
            page = await http.get(f"/cases/{case.id}")
            assert question in page.text and 'id="claim"' in page.text
            csrf = csrf_of(page.text)
            assert (await http.post(f"/cases/{case.id}/claim", data={"csrf": "forged"})).status_code == 403
            claimed = await http.post(f"/cases/{case.id}/claim", data={"csrf": csrf})
            assert claimed.status_code == 303
            reply = (
                "Give 50-100 ml ORS after each loose stool & keep breastfeeding. <b>Come back</b> if worse."
            )
            preview = await http.post(f"/cases/{case.id}/preview", data={"csrf": csrf, "reply": reply})
            shown = re.search(r'id="preview-text">(.*?)</div>', preview.text, re.S)
            assert shown and shown.group(1) == str(escape(reply_text("en", reply)))  # exactly what is sent
            stub.fail_next("sendMessage", retry_after=1)  # flood control on the reply: retried
            before = len(stub.calls)
            sent = await http.post(f"/cases/{case.id}/send", data={"csrf": csrf, "reply": reply})
            assert sent.status_code == 303 and sent.headers["location"] == f"/cases?sent={case.id}"
            delivered = await stub.wait_for(
                "sendMessage", lambda c: c.ok and with_button("hv:up:", ADA)(c), since=before
            )
            refused = [c for c in stub.calls_of("sendMessage")[-5:] if c.status == 429]
            assert refused, stub.summary()
        message = delivered[0]
        assert message.params["text"] == reply_text("en", reply)
        assert message.params["text"].startswith("🩺 Reply from a clinician of the study team")
        assert message.params["reply_parameters"]["message_id"] == asked["message"]["message_id"]
        await _case_delivery(app).wait_delivered(1)  # sent, case closed, entry acked
        # Delivered again (a crash before the ack): not sent twice.
        count = len(stub.calls_of("sendMessage"))
        again = CaseReplyMessage(case_id=case.id, question_id=case.question_id, text=message.params["text"])
        redis = await connect(stack.redis_url)
        try:
            entry = await CaseQueue(queue_from_settings(redis, stack.storage)).publish(again)
        finally:
            await redis.aclose()
        await _case_delivery(app).deliver(Delivery(entry, again, 2))
        assert len(stub.calls_of("sendMessage")) == count

        before = len(stub.calls)
        stub.push_callback(f"hv:up:{case.id}", user_id=ADA, message_id=message.result["message_id"])
        await stub.wait_for("answerCallbackQuery", since=before)

    [closed] = await _cases(sessionmaker)
    assert closed.status == "closed" and closed.outcome == "delivered" and closed.rating == "up"
    assert closed.question_text is None and closed.answer_text is None and closed.reply_text is None
    assert closed.reply_sha256 and closed.claimed_at and closed.replied_at and closed.closed_at
    async with sessionmaker() as session:
        [event] = await _clinician_consents(session)
        assert event.question_id == closed.question_id and event.new_value == "granted"
        assert event.id == closed.consent_id
        assert await verify_chain(session) > 0
    for name in ("case.opened", "case.read", "case.claimed", "case.replied", "case.closed", "case.rated"):
        rows = await audit_rows(sessionmaker, name)
        assert rows and all(question not in row.payload and "ORS" not in row.payload for row in rows), name

    async with _console(stack, sessionmaker) as http:  # reviewers may not, admins may
        await _login(http, *REVIEWER)
        assert (await http.get("/cases")).status_code == 403
        assert (await http.get(f"/cases/{case.id}")).status_code == 403
    async with _console(stack, sessionmaker) as http:
        await _login(http, *ADMIN)
        assert (await http.get("/cases")).status_code == 200
        assert 'id="no-cases"' in (await http.get("/cases")).text


class _RolledBack(Exception):
    """The console's reply transaction fails after the reply was handed to the bot."""


async def test_a_reply_whose_transaction_rolls_back_after_the_hand_over_is_never_sent(
    stack: Stack, sessionmaker: Sessions
) -> None:
    """The console hands a reply to the bot, then its transaction rolls back (the database failed at
    commit): the bot, which waits for that transaction, finds no reply and sends nothing; the case
    stays claimed and a reply sent afterwards reaches the user."""
    await _accounts(sessionmaker)
    stub = stack.stub
    outbox = redis_outbox(stack.redis_url, stack.storage)
    async with polling_bot(stack) as app, inprocess_worker(stack):
        await _handed_over(stack, "Can I give ibuprofen to a child with measles?")
        [case] = await _cases(sessionmaker)
        async with sessionmaker.begin() as session:
            account = (await session.execute(select(ReviewAccount))).scalars().first()
            assert account is not None
            assert await claim_case(session, await session.get_one(Case, case.id), account.id, account.name)
        lost, kept = "Lost reply: give paracetamol instead.", "Kept reply: give paracetamol instead."
        before = len(stub.calls)
        with contextlib.suppress(_RolledBack):
            async with sessionmaker.begin() as session:
                claimed = await session.get_one(Case, case.id)
                assert await reply_case(session, claimed, account.id, account.name, lost)
                await outbox(CaseReplyMessage(case_id=case.id, question_id=case.question_id, text=lost))
                raise _RolledBack
        await _case_delivery(app).wait_delivered(1)
        assert not [c for c in stub.calls[before:] if lost in str(c.params.get("text", ""))]
        [after] = await _cases(sessionmaker)
        assert after.status == "claimed" and after.reply_text is None
        async with sessionmaker.begin() as session:
            claimed = await session.get_one(Case, case.id)
            assert await reply_case(session, claimed, account.id, account.name, kept)
            await outbox(CaseReplyMessage(case_id=case.id, question_id=case.question_id, text=kept))
        await _case_delivery(app).wait_delivered(2)
    assert [c for c in stub.calls[before:] if c.ok and kept in str(c.params.get("text", ""))]
    [closed] = await _cases(sessionmaker)
    assert closed.status == "closed" and closed.outcome == "delivered"


async def test_declining_opens_no_case(stack: Stack, sessionmaker: Sessions) -> None:
    stub = stack.stub
    async with polling_bot(stack):
        await give_consent(stack.stub, ADA, "both")
        before = len(stub.calls)
        stub.push_message("Is a rash after amoxicillin an allergy?", user_id=ADA)
        await stub.wait_for("sendMessage", says("in the queue", ADA), since=before)
        prompt = await agreement(stub, ADA)  # /human: the last question
        assert await choose(stub, ADA, prompt, "no") == texts.HANDOVER_DECLINED
    assert await _cases(sessionmaker) == []
    async with sessionmaker() as session:
        events = await _clinician_consents(session)
    assert [e.new_value for e in events] == ["declined"]


async def test_an_unclaimed_case_alerts_the_oncall_chat_and_tells_the_user(
    stack: Stack, sessionmaker: Sessions
) -> None:
    stub = stack.stub
    stub.add_chat(ONCALL, chat_type="supergroup", title="On call")
    settings = {"oncall_chat_id": ONCALL, "handover_alert_min": 0.001, "handover_check_s": 0.1}
    async with polling_bot(stack, console_url="https://console.example/", **settings):
        await give_consent(stack.stub, ADA, "both")
        before = len(stub.calls)
        stub.push_message(DANGER, user_id=ADA)
        referral = (await stub.wait_for("sendMessage", with_button("hv:ask:", ADA), since=before))[0]
        assert "emergency" in referral.params["text"]  # the danger-sign referral offers the button
        await stub.wait_for("sendMessage", says("in the queue", ADA), since=before)
        prompt = await agreement(stub, ADA, referral)
        await choose(stub, ADA, prompt, "yes")
        [case] = await _cases(sessionmaker)
        assert case.danger and case.answer_text is None
        alert = (await stub.wait_for("sendMessage", says("without a clinician", ONCALL), since=before))[0]
        assert f"https://console.example/cases/{case.id}" in alert.params["text"]
        assert "breathing" not in alert.params["text"]
        await stub.wait_for("sendMessage", says(texts.HANDOVER_WAITING, ADA), since=before)
    [case] = await _cases(sessionmaker)
    assert case.overdue_at is not None and case.status == "open"


async def test_forget_erases_the_case_texts(stack: Stack, sessionmaker: Sessions) -> None:
    stub = stack.stub
    question = "Can I give ibuprofen to a child with dengue?"
    async with polling_bot(stack):
        await _handed_over(stack, question)
        [case] = await _cases(sessionmaker)
        assert case.question_text == question
        before = len(stub.calls)
        stub.push_command("/forget", user_id=ADA)
        await stub.wait_for("sendMessage", says("I erased everything", ADA), since=before)
    [case] = await _cases(sessionmaker)
    assert case.question_text is None and case.erased_at is not None
    assert case.status == "closed" and case.outcome == "erased"
    async with sessionmaker() as session:
        kinds = list((await session.execute(select(Tombstone.kind))).scalars())
        assert "case" in kinds
        assert await verify_chain(session) > 0
    redis = await connect(stack.redis_url)
    try:
        prefix = f"{stack.storage.queue_namespace}:handover:"
        left = [key async for key in redis.scan_iter(f"{prefix}*")]
    finally:
        await redis.aclose()
    assert left == [f"{prefix}replies"]  # no offer, route or last question: only the (empty) stream
