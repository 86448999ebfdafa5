"""Field-team operation end to end: the real bot against the Bot API stand-in, Redis and the database.

Answers come from the real llama.cpp worker on the tiny model, except in two tests that need an
answer of a given content or duration (a long, markup-laden answer; slow answers for the wait
estimate): there the test itself takes the question and publishes the answer through the queue
contract (read_questions / finish), as a worker does.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.telegram import texts
from bot.telegram.i18n import t
from storage.models import Feedback, Question
from storage.queue import AnswerMessage, QuestionMessage, queue_from_settings
from storage.queue.connection import connect
from storage.repositories.feedback import feedback_counts
from tests.support.consent import give_consent
from tests.support.stack import Stack, inprocess_worker, polling_bot
from tests.support.telegram_stub import BOT_USERNAME, Call, says
from tests.test_e2e import stack_streams_empty

ONCALL = -100555
GROUP = -100777
ADA, BEN, CHI = 1001, 1002, 1003


async def answer_next(stack: Stack, text: str, *, took_s: float = 1.0) -> AnswerMessage:
    """Act as a worker: take the next question and publish ``text`` as its answer."""
    redis = await connect(stack.redis_url)
    try:
        queue = queue_from_settings(redis, stack.storage)
        await queue.ensure_groups()
        deliveries = await queue.read_questions("scripted", count=1, block_ms=10_000)
        assert deliveries, "no question reached the queue"
        question = deliveries[0].message
        now = time.time()
        answer = AnswerMessage(
            question_id=question.question_id, chat_id=question.chat_id, reply_to=question.message_id,
            user=question.user, text=text, received_at=question.received_at,
            enqueued_at=question.enqueued_at, taken_at=now - took_s, first_token_at=now - took_s / 2,
            finished_at=now, worker="scripted", prompt_version="1",
        )  # fmt: skip
        await queue.finish(deliveries[0], answer)
        return answer
    finally:
        await redis.aclose()


def acks(stack: Stack, chat_id: int | None = None) -> list[Call]:
    return [c for c in stack.stub.calls_of("sendMessage") if says("in the queue", chat_id)(c)]


# -- (1) danger signs ---------------------------------------------------------------------------


async def test_danger_sign_gets_referral_at_once_alert_without_text_and_is_still_answered(
    stack: Stack, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    stub = stack.stub
    stub.add_chat(ONCALL, chat_type="supergroup", title="On call")
    async with polling_bot(stack, oncall_chat_id=ONCALL, emergency_number="112"):
        await give_consent(stack.stub, ADA)
        before = len(stub.calls)
        text = "Baby 3 weeks old is not breathing well and turning blue"
        stub.push_message(text, user_id=ADA)
        referral = (await stub.wait_for("sendMessage", says("call 112", ADA), since=before))[0]
        alert = (await stub.wait_for("sendMessage", says("Danger sign", ONCALL), since=before))[0]
        ack = (await stub.wait_for("sendMessage", says("in the queue", ADA), since=before))[0]
        async with inprocess_worker(stack):  # the real llama.cpp worker on the tiny model
            await stub.wait_for("sendMessage", says(texts.REMINDER, ADA), since=before)
        assert await stack_streams_empty(stack)  # acked after it was recorded
    assert stub.calls.index(referral) < stub.calls.index(ack)
    assert "en:not_breathing" in alert.params["text"]
    assert "breathing well" not in alert.params["text"] and str(ADA) not in alert.params["text"]
    async with sessionmaker() as session:
        question = (await session.execute(select(Question))).scalar_one()
        pseudonym = (await session.execute(select(Question.user_id))).scalar_one()
    assert question.status == "answered" and pseudonym
    # A harmless question in French gets no referral.
    async with polling_bot(stack, oncall_chat_id=ONCALL):
        before = len(stub.calls)
        stub.push_message("Quelle dose de paracétamol pour 12 kg ?", user_id=ADA, language_code="fr")
        await stub.wait_for("sendMessage", says("dans la file", ADA), since=before)
        assert not [c for c in stub.calls[before:] if says("🚨")(c) or says("Danger", ONCALL)(c)]


# -- (2) long answers, plain text ------------------------------------------------------------------


async def test_long_answer_with_markup_characters_is_split_and_never_refused(
    stack: Stack, running_bot: Any
) -> None:
    stub = stack.stub
    await give_consent(stack.stub, ADA)
    update = stub.push_message("Explain malaria treatment in detail", user_id=ADA)
    await stub.wait_for("sendMessage", says("in the queue", ADA))
    before = len(stub.calls)
    paragraph = " ".join(
        f"Step {i}: give <b>ACT</b> *now* _if_ [weight] > 5 kg & check `temp`." for i in range(30)
    )
    body = "\n\n".join([paragraph] * 4)  # about 8,000 characters
    await answer_next(stack, body)
    last = (await stub.wait_for("sendMessage", says(texts.REMINDER, ADA)))[0]
    pieces = [
        c for c in stub.calls[before:] if c.method.lower() == "sendmessage" and c.params["chat_id"] == ADA
    ]
    assert len(pieces) == 3 and all(c.ok for c in pieces) and pieces[-1] is last
    assert all("parse_mode" not in c.params for c in pieces)
    assert all(len(c.params["text"]) <= 4096 for c in pieces)
    assert pieces[0].params["reply_parameters"]["message_id"] == update["message"]["message_id"]
    assert all(c.params["text"].endswith("`temp`.") for c in pieces[:2])  # cut between paragraphs
    assert "<b>ACT</b>" in pieces[0].result["text"]  # shown literally, not parsed
    buttons = last.params["reply_markup"]["inline_keyboard"][0]
    assert [b["text"] for b in buttons] == ["👍", "👎", texts.HANDOVER_BUTTON]


# -- (3) fairness --------------------------------------------------------------------------------


async def test_one_pending_question_per_user_busy_queue_and_estimated_wait(stack: Stack) -> None:
    stub = stack.stub
    async with polling_bot(stack, busy_queue_size=1):
        await give_consent(stack.stub, ADA)
        await give_consent(stack.stub, BEN)
        stub.push_message("first question", user_id=ADA)
        first_ack = (await stub.wait_for("sendMessage", says("in the queue", ADA)))[0]
        assert "number 1" in first_ack.params["text"] and "estimated" not in first_ack.params["text"]
        stub.push_message("first question", user_id=ADA)  # a quick repeat
        await stub.wait_for("sendMessage", says(texts.STILL_WORKING, ADA))
        stub.push_message("another one", user_id=BEN)
        await stub.wait_for("sendMessage", says(texts.BUSY, BEN))
        await answer_next(stack, "An answer.", took_s=150.0)
        await stub.wait_for("sendMessage", says(texts.REMINDER, ADA))
        before = len(stub.calls)
        stub.push_message("now my question", user_id=BEN)
        ack = (await stub.wait_for("sendMessage", says("in the queue", BEN), since=before))[0]
    assert "number 1" in ack.params["text"] and "estimated wait about 3 min" in ack.params["text"]
    assert len(acks(stack)) == 2


async def test_wait_estimate_counts_every_workers_slots_and_says_under_a_minute(stack: Stack) -> None:
    """Answers take 40 s: 5th in line with one slot is five rounds; with 8 slots it is the first round."""
    stub = stack.stub
    redis = await connect(stack.redis_url)
    queue = queue_from_settings(redis, stack.storage)
    try:
        async with polling_bot(stack):
            await give_consent(stack.stub, ADA)
            await give_consent(stack.stub, BEN)
            stub.push_message("first question", user_id=ADA)
            await stub.wait_for("sendMessage", says("in the queue", ADA))
            await answer_next(stack, "An answer.", took_s=40.0)
            await stub.wait_for("sendMessage", says(texts.REMINDER, ADA))
            for n in range(4):  # four questions ahead of Ben's
                await queue.enqueue(_waiting(n))
            before = len(stub.calls)
            stub.push_message("one slot: five rounds", user_id=BEN)
            one_slot = (await stub.wait_for("sendMessage", says("in the queue", BEN), since=before))[0]
            await queue.advertise("w-a", 4, ttl_s=60)
            await queue.advertise("w-b", 4, ttl_s=60)
            before = len(stub.calls)
            stub.push_message("eight slots: the first round", user_id=ADA)
            eight = (await stub.wait_for("sendMessage", says("in the queue", ADA), since=before))[0]
    finally:
        await redis.aclose()
    assert "number 5" in one_slot.params["text"] and "about 4 min" in one_slot.params["text"]
    assert "number 6" in eight.params["text"] and "under a minute" in eight.params["text"]


def _waiting(n: int) -> QuestionMessage:
    """A question of someone else, waiting in the queue."""
    return QuestionMessage(
        question_id=f"waiting{n:04d}", chat_id=900 + n, message_id=1, user=f"someone-{n}",
        text="waiting", enqueued_at=time.time(),
    )  # fmt: skip


# -- (4) groups ----------------------------------------------------------------------------------


async def test_group_of_three_members(stack: Stack, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    """Ada (admin) and Ben consented in private; Chi has not. Only /ask, mentions and replies count."""
    stub = stack.stub
    group = {"chat_id": GROUP, "chat_type": "supergroup", "title": "Team Kasai"}
    stub.set_chat_member_status(GROUP, ADA, "administrator")
    async with polling_bot(stack):
        await give_consent(stack.stub, ADA)
        await give_consent(stack.stub, BEN)
        stub.push_my_chat_member("member", old_status="left", user_id=ADA, **group)
        await stub.wait_for("sendMessage", says("/enable", GROUP))
        before = len(stub.calls)
        stub.push_message("Morning all, who has the car keys?", user_id=BEN, **group)
        stub.push_command("/ask", "fever in a 2 year old?", user_id=BEN, **group)
        await stub.wait_for("sendMessage", says(texts.GROUP_DISABLED, GROUP), since=before)
        stub.push_command("/enable", user_id=BEN, **group)
        await stub.wait_for("sendMessage", says(texts.ADMINS_ONLY, GROUP), since=before)
        stub.push_command("/enable", mention_bot=True, user_id=ADA, **group)
        await stub.wait_for("sendMessage", says(texts.GROUP_ENABLED, GROUP), since=before)
        assert not [
            c for c in stub.calls[before:] if c.params.get("chat_id") == GROUP and "keys" in str(c.params)
        ]
        group_replies = [c for c in stub.calls[before:] if c.method.lower() == "sendmessage"]
        assert [c.params["chat_id"] for c in group_replies] == [GROUP] * 3
        assert len([c for c in stub.calls_of("getChatMember")]) == 2

        question = stub.push_command("/ask", "fever in a 2 year old?", user_id=BEN, **group)
        ack = (await stub.wait_for("sendMessage", says("in the queue", GROUP), since=before))[0]
        assert ack.params["reply_parameters"]["message_id"] == question["message"]["message_id"]
        async with inprocess_worker(stack):  # the real llama.cpp worker on the tiny model
            answer = (await stub.wait_for("sendMessage", says(texts.REMINDER, GROUP), since=before))[0]
        assert answer.params["reply_parameters"]["message_id"] == question["message"]["message_id"]

        before = len(stub.calls)
        stub.push_message(f"@{BOT_USERNAME} what about ORS?", user_id=ADA, entities=[
            {"type": "mention", "offset": 0, "length": len(BOT_USERNAME) + 1}], **group)  # fmt: skip
        await stub.wait_for("sendMessage", says("in the queue", GROUP), since=before)
        async with inprocess_worker(stack):  # the real llama.cpp worker on the tiny model
            await stub.wait_for("sendMessage", says(texts.REMINDER, GROUP), since=before)

        # Chi replies to the bot's answer without having consented: a deep link, the question is kept.
        before = len(stub.calls)
        held = stub.push_message(
            "and for a baby?", user_id=CHI, reply_to_message_id=answer.result["message_id"], **group
        )
        link = (
            await stub.wait_for(
                "sendMessage", says(f"t.me/{BOT_USERNAME}?start=consent", GROUP), since=before
            )
        )[0]
        assert len(acks(stack, GROUP)) == 2  # nothing queued for Chi yet
        stub.push_command("/start", "consent", user_id=CHI)
        await give_consent(stack.stub, CHI)
        await stub.wait_for("sendMessage", says(texts.GROUP_QUESTION_RELEASED, CHI), since=before)
        chi_ack = (await stub.wait_for("sendMessage", says("in the queue", GROUP), since=before))[0]
        assert chi_ack.params["reply_parameters"]["message_id"] == held["message"]["message_id"]
        assert stub.calls.index(link) < stub.calls.index(chi_ack)
        async with inprocess_worker(stack):  # the real llama.cpp worker on the tiny model
            await stub.wait_for("sendMessage", says(texts.REMINDER, GROUP), since=before)

        stub.push_command("/disable", user_id=ADA, **group)
        await stub.wait_for("sendMessage", says(texts.GROUP_DISABLED_DONE, GROUP), since=before)
        assert await stack_streams_empty(stack)
    async with sessionmaker() as session:
        rows = (await session.execute(select(Question.chat_type, Question.status))).all()
    assert sorted(rows) == [("supergroup", "answered")] * 3


async def test_group_question_is_dropped_when_consent_does_not_come(stack: Stack) -> None:
    stub = stack.stub
    group = {"chat_id": GROUP, "chat_type": "group", "title": "Team"}
    stub.set_chat_member_status(GROUP, ADA, "creator")
    async with polling_bot(stack, consent_hold_s=0.5):
        stub.push_command("/enable", user_id=ADA, **group)
        await stub.wait_for("sendMessage", says(texts.GROUP_ENABLED, GROUP))
        stub.push_command("/ask", "dose of zinc?", user_id=CHI, **group)
        await stub.wait_for("sendMessage", says("?start=consent", GROUP))
        await stub.wait_for("sendMessage", says(texts.GROUP_QUESTION_DROPPED, GROUP), timeout=10)
        await give_consent(stack.stub, CHI)
    assert not acks(stack)


# -- (5) feedback --------------------------------------------------------------------------------


async def _answered(stack: Stack, user: int, choice: str) -> tuple[str, Call]:
    await give_consent(stack.stub, user, choice)
    before = len(stack.stub.calls)
    stack.stub.push_message("How to treat scabies?", user_id=user)
    await stack.stub.wait_for("sendMessage", says("in the queue", user), since=before)
    async with inprocess_worker(stack):  # the real llama.cpp worker on the tiny model
        sent = (await stack.stub.wait_for("sendMessage", says(texts.REMINDER, user), since=before))[0]
    question_id = sent.params["reply_markup"]["inline_keyboard"][0][0]["callback_data"].split(":")[2]
    return question_id, sent


async def test_feedback_buttons_and_reason_kept_only_with_research_consent(
    stack: Stack, running_bot: Any, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    stub = stack.stub
    answer_id, sent = await _answered(stack, ADA, "both")
    stub.push_callback(f"fb:up:{answer_id}", user_id=BEN, chat_id=ADA, message_id=sent.result["message_id"])
    await stub.wait_for("answerCallbackQuery", says(texts.FEEDBACK_NOT_YOURS))
    stub.push_callback("fb:up:00000000deadbeef", user_id=ADA, message_id=sent.result["message_id"])
    await stub.wait_for("answerCallbackQuery", says(texts.FEEDBACK_STALE))
    stub.push_callback(f"fb:down:{answer_id}", user_id=ADA, message_id=sent.result["message_id"])
    prompt = (await stub.wait_for("sendMessage", says(texts.FEEDBACK_REASON, ADA)))[0]
    assert prompt.params["reply_markup"]["force_reply"] is True
    await stub.wait_for("editMessageReplyMarkup")
    stub.push_message(
        "It forgot the dose for children", user_id=ADA, reply_to_message_id=prompt.result["message_id"]
    )
    await stub.wait_for("sendMessage", says(texts.FEEDBACK_REASON_THANKS, ADA))

    other_id, other_sent = await _answered(stack, BEN, "service")
    stub.push_callback(f"fb:down:{other_id}", user_id=BEN, message_id=other_sent.result["message_id"])
    prompt = (await stub.wait_for("sendMessage", says(texts.FEEDBACK_REASON, BEN)))[0]
    stub.push_message("Too long", user_id=BEN, reply_to_message_id=prompt.result["message_id"])
    await stub.wait_for("sendMessage", says(texts.FEEDBACK_REASON_THANKS, BEN))
    async with sessionmaker() as session:
        rows = {f.question_id: f for f in (await session.execute(select(Feedback))).scalars()}
        counts = await feedback_counts(session)
    assert (rows[answer_id].rating, rows[answer_id].reason) == (
        "down",
        "It forgot the dose for children",
    )
    assert (rows[other_id].rating, rows[other_id].reason) == ("down", None)
    assert counts == {"up": 0, "down": 2}
    assert len(acks(stack)) == 2  # the reasons were not taken as questions


# -- (6) bad input -------------------------------------------------------------------------------


async def test_channels_other_bots_and_very_fast_repeats(stack: Stack) -> None:
    stub = stack.stub
    async with polling_bot(stack, user_messages_per_minute=3):
        stub.push_channel_post("Announcement: clinic closed Friday")
        await stub.wait_for("sendMessage", says(texts.CHANNEL_UNSUPPORTED))
        stub.push_message("/start", user_id=4040, from_bot=True)
        await give_consent(stack.stub, ADA)  # 2 messages so far: /start and the button
        for i in range(4):
            stub.push_message(f"question {i}", user_id=ADA)
        await stub.wait_for("sendMessage", says(texts.SLOW_DOWN, ADA))
        await stub.wait_for("sendMessage", says("in the queue", ADA))
        stub.push_command("/help", user_id=BEN)
        await stub.wait_for("sendMessage", says("/cancel", BEN))
    assert not [c for c in stub.calls_of("sendMessage") if c.params["chat_id"] == 4040]
    assert len(acks(stack)) == 1
    assert len([c for c in stub.calls_of("sendMessage") if says(texts.SLOW_DOWN)(c)]) == 1


# -- (7) access ----------------------------------------------------------------------------------


async def test_allowlist_and_invite_codes(stack: Stack, monkeypatch: Any, capsys: Any) -> None:
    import argparse
    import asyncio

    from bot.cli.args_invite import duration
    from bot.cli.invite_cmd import create

    monkeypatch.setenv("DATABASE_URL", stack.db_url)
    monkeypatch.setenv("DATA_DIR", str(stack.storage.data_dir))
    assert await asyncio.to_thread(create, argparse.Namespace(uses=1, expires=duration("7d"))) == 0
    code = capsys.readouterr().out.split("invite code: ")[1].split()[0]
    stub = stack.stub
    async with polling_bot(stack, allowed_users=str(ADA), allowed_chats=str(GROUP)):
        stub.push_command("/start", user_id=ADA)
        await stub.wait_for(
            "sendMessage", lambda c: c.params["chat_id"] == ADA and bool(c.params.get("reply_markup"))
        )
        stub.push_message("hello?", user_id=BEN)
        await stub.wait_for("sendMessage", says(texts.NOT_INVITED, BEN))
        stub.push_command("/start", code, user_id=BEN)
        await stub.wait_for("sendMessage", says(texts.INVITE_ACCEPTED, BEN))
        await give_consent(stack.stub, BEN)
        stub.push_command("/start", code, user_id=CHI)
        await stub.wait_for("sendMessage", says(texts.INVITE_REJECTED, CHI))
        stub.push_command("/ask", "a question", user_id=CHI, chat_id=-100999, chat_type="group")
        stub.push_message("dose of ORS?", user_id=BEN)
        await stub.wait_for("sendMessage", says("in the queue", BEN))
    assert not [c for c in stub.calls_of("sendMessage") if c.params["chat_id"] == -100999]
    assert not [
        c for c in stub.calls_of("sendMessage") if c.params["chat_id"] == CHI and says("in the queue")(c)
    ]


async def test_admin_chat_is_alerted_on_dead_letters_and_backlog(stack: Stack) -> None:
    stub = stack.stub
    admin = -100321
    stub.add_chat(admin, chat_type="supergroup", title="Ops")
    stack.storage = stack.storage.model_copy(update={"worker_down_s": 1.0})
    redis = await connect(stack.redis_url)
    try:
        queue = queue_from_settings(redis, stack.storage)
        await queue.ensure_groups()
        async with polling_bot(stack, admin_chat_id=admin, monitor_interval_s=0.2, busy_queue_size=1):
            await give_consent(stack.stub, ADA)
            stub.push_message("question", user_id=ADA)
            await stub.wait_for("sendMessage", says("backing up", admin))
            await redis.xadd(queue.names.dead, {"entry_id": "0-1", "reason": "test", "at": "0"})
            alert = (await stub.wait_for("sendMessage", says("dead letters", admin)))[0]
            await stub.wait_for("sendMessage", says("No worker has read the queue", admin))
            async with inprocess_worker(stack):
                await stub.wait_for("sendMessage", says("reading the queue again", admin))
    finally:
        await redis.aclose()
    assert "question" not in alert.params["text"].split("question(s)")[1]


# -- (8) languages -------------------------------------------------------------------------------


async def test_language_from_telegram_and_lang_command(stack: Stack, running_bot: Any) -> None:
    stub = stack.stub
    await give_consent(stack.stub, ADA, language="fr")
    stub.push_message("Quelle dose de zinc ?", user_id=ADA, language_code="fr")
    await stub.wait_for("sendMessage", says(t(texts.ACK, "fr").split("{")[0], ADA))
    stub.push_command("/lang", user_id=ADA, language_code="fr")
    menu = (await stub.wait_for("sendMessage", says(t(texts.LANG_CHOOSE, "fr"), ADA)))[0]
    codes = [row[0]["callback_data"] for row in menu.params["reply_markup"]["inline_keyboard"]]
    assert codes == ["lang:en", "lang:fr", "lang:ar", "lang:es", "lang:sw"]
    stub.push_callback("lang:sw", user_id=ADA, message_id=menu.result["message_id"], language_code="fr")
    await stub.wait_for("editMessageText", says("Kiswahili"))
    stub.push_message("swali la pili", user_id=ADA, language_code="fr")
    await stub.wait_for("sendMessage", says(t(texts.STILL_WORKING, "sw"), ADA))
    stub.push_command("/lang", "ar", user_id=ADA)
    await stub.wait_for("sendMessage", says(t(texts.LANG_SET, "ar"), ADA))
    stub.push_command("/help", user_id=ADA)
    await stub.wait_for("sendMessage", says("/lang – اختيار لغتك", ADA))
    async with inprocess_worker(stack):  # the real llama.cpp worker on the tiny model
        await stub.wait_for("sendMessage", says(t(texts.REMINDER, "fr"), ADA))
