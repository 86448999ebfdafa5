"""The use cases without Telegram (consent, access, rights, feedback, asking) on real Redis and databases."""

from __future__ import annotations

import time
import uuid

import pytest
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.consent_texts import current_version, load_consent_text
from bot.flows import access, ask, consent, feedback, groups, language, rights
from bot.resources import Resources
from bot.settings import BotSettings
from storage.pseudonym import Pseudonymizer
from storage.queue import QuestionMessage, Queue
from storage.queue.updates import UpdateLog
from storage.repositories.invites import create_invite
from storage.repositories.users import get_user

ADA = 4242


@pytest.fixture
def res(sessionmaker: async_sessionmaker[AsyncSession], queue: Queue) -> Resources:
    """Resources as ``post_init`` builds them, on the test's database and Redis namespace."""
    settings = BotSettings(
        telegram_bot_token=SecretStr("123:test"), user_messages_per_minute=2, group_messages_per_minute=3,
        busy_queue_size=5,
    )  # fmt: skip
    return Resources(
        settings=settings, sessionmaker=sessionmaker, queue=queue,
        pseudonyms=Pseudonymizer(b"k" * 32), consent=load_consent_text(180, "R"),
        updates=UpdateLog(queue.redis, queue.names.namespace),
    )  # fmt: skip


def question(
    res: Resources, text: str = "what dose of paracetamol?", chat_type: str = "private"
) -> QuestionMessage:
    """A question of ADA in her private chat."""
    now = time.time()
    return QuestionMessage(
        question_id=uuid.uuid4().hex, chat_id=ADA, message_id=1, user=res.pseudonyms.user(ADA),
        chat_type=chat_type, language="en", text=text, received_at=now, enqueued_at=now,
    )  # fmt: skip


async def test_a_choice_under_a_stale_text_is_not_stored(res: Resources) -> None:
    ada = res.pseudonyms.user(ADA)
    assert await consent.choose(res, ada, "both", "en-0", "en") is None
    assert not await consent.consented(res, ada)


async def test_a_language_chosen_before_consent_moves_to_the_new_user_row(res: Resources) -> None:
    ada = res.pseudonyms.user(ADA)
    await language.choose(res, ada, "fr")
    assert await res.pending_languages.chosen_language(ada) == "fr"
    assert await consent.choose(res, ada, "both", current_version("en"), "en") == 0
    assert await consent.consented(res, ada)
    assert await res.pending_languages.chosen_language(ada) is None
    async with res.sessionmaker() as session:
        user = await get_user(session, ada)
    assert user is not None and user.language == "fr" and user.research_consent
    language.forget_recalled()
    assert language.recalled(ada) is None
    assert await language.recall(res, ada) == "fr"
    assert language.recalled(ada) == "fr"


async def test_the_first_message_over_the_user_limit_is_the_one_answered(res: Resources) -> None:
    ada = res.pseudonyms.user(ADA)
    verdicts = [await access.rate(res, ada, None) for _ in range(4)]
    assert [v.limited for v in verdicts] == [False, False, True, True]
    assert [v.first_over for v in verdicts] == [False, False, True, False]


async def test_a_group_over_its_limit_is_limited_for_everyone(res: Resources) -> None:
    group = res.pseudonyms.chat(-100)
    for user in range(3):
        assert not (await access.rate(res, f"user-{user}", group)).limited
    verdict = await access.rate(res, "user-3", group)
    assert verdict.over_group and not verdict.over_user and verdict.limited


async def test_only_allowlisted_users_or_invite_holders_are_let_in(res: Resources) -> None:
    res.settings = res.settings.model_copy(update={"allowed_users": str(ADA)})
    assert await access.allowed(res, chat_id=ADA, private=True, user_id=ADA, redeeming=False)
    assert not await access.allowed(res, chat_id=7, private=True, user_id=7, redeeming=False)
    assert await access.allowed(res, chat_id=7, private=True, user_id=7, redeeming=True)
    assert not await access.allowed(res, chat_id=-100, private=False, user_id=ADA, redeeming=False)
    assert not await access.redeem(res, res.pseudonyms.user(7), "not-a-code")


async def test_one_pending_question_per_user_and_a_repeat_is_not_acknowledged_again(res: Resources) -> None:
    await consent.choose(res, res.pseudonyms.user(ADA), "service", current_version("en"), "en")
    first = question(res)
    queued = await ask.enqueue(res, first, "en")
    assert isinstance(queued, ask.Queued) and queued.acknowledge and queued.position == 1
    again = await ask.enqueue(res, first, "en")  # the same update handled again
    assert isinstance(again, ask.Queued) and not again.acknowledge
    assert await res.queue.waiting() == 1
    assert await ask.enqueue(res, question(res), "en") is ask.Refusal.STILL_WORKING
    assert await ask.cancel(res, first.user, first.chat_id)
    assert not await ask.cancel(res, first.user, first.chat_id)


def test_empty_and_over_long_text_are_refused() -> None:
    assert ask.refusal_of("", 10) is ask.Refusal.EMPTY
    assert ask.refusal_of("x" * 11, 10) is ask.Refusal.TOO_LONG
    assert ask.refusal_of("x" * 10, 10) is None


async def test_only_the_asker_rates_an_answer(res: Resources) -> None:
    ada = res.pseudonyms.user(ADA)
    await consent.choose(res, ada, "both", current_version("en"), "en")
    asked = question(res)
    await ask.enqueue(res, asked, "en")
    assert await feedback.rate(res, "someone-else", asked.question_id, "down") is feedback.Rated.NOT_YOURS
    assert await feedback.rate(res, ada, "f" * 32, "down") is feedback.Rated.STALE
    assert await feedback.rate(res, ada, asked.question_id, "down") is feedback.Rated.RECORDED
    chat = res.pseudonyms.chat(ADA)
    await feedback.prompted(res, chat, 99, asked.question_id)
    assert not await feedback.reason(res, chat, 99, "someone-else", "wrong dose")  # put back for the asker
    assert await feedback.reason(res, chat, 99, ada, "wrong dose")
    assert not await feedback.reason(res, chat, 99, ada, "again")  # a prompt is answered once


async def test_a_held_group_question_is_released_only_after_consent(res: Resources) -> None:
    ada = res.pseudonyms.user(ADA)
    held = question(res, chat_type="group")
    await groups.hold(res, held, "fr")
    assert await groups.release(res, ada) is None  # no consent yet: still held
    await consent.choose(res, ada, "service", current_version("en"), "en")
    released = await groups.release(res, ada)
    assert released is not None and released.question_id == held.question_id
    assert released.language == "fr"
    await res.held.hold(question(res, chat_type="group"), ttl_s=60, now=time.time() - 61)  # overdue
    assert [q.user for q in await groups.expire_due(res)] == [ada]
    assert await groups.expire_due(res) == []  # taken once


async def test_forget_erases_the_user_the_held_question_and_the_grant(res: Resources) -> None:
    ada = res.pseudonyms.user(ADA)
    await consent.choose(res, ada, "both", current_version("en"), "en")
    await ask.enqueue(res, question(res), "en")
    await groups.hold(res, question(res, chat_type="group"), "en")
    async with res.sessionmaker.begin() as session:
        code = await create_invite(session, uses=1, expires_at=None)
    assert await access.redeem(res, ada, code) and await access.granted(res, ada)
    erased = await rights.forget(res, ada, ADA, "en")
    assert erased.questions == 1 and erased.held
    assert not await consent.consented(res, ada)
    assert not await access.granted(res, ada) and await res.queue.pending_of(ada) is None
    status = await rights.status(res, ada)  # nothing leads from the pseudonym to the kept tombstone
    assert status.version is None and status.latest == {} and not status.outdated


async def test_withdraw_keeps_the_service_and_erases_research_text(res: Resources) -> None:
    ada = res.pseudonyms.user(ADA)
    await consent.choose(res, ada, "both", current_version("en"), "en")
    await ask.enqueue(res, question(res), "en")
    erased = await rights.withdraw(res, ada, "en")
    assert erased.questions == 1 and not erased.held
    assert await consent.consented(res, ada)
    assert await rights.privacy_choice(res, ada) == "service"
