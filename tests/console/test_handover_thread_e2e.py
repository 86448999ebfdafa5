"""A case on a follow-up shows the earlier turns of its conversation, end to end.

The real bot and worker against the Bot API stand-in; `meditron-bot admin` (the console, in its own
process, with a clinician made by `meditron-bot admin add-user`) read over HTTP on the same data.
A first question, a follow-up, "Ask a clinician" on the follow-up's answer and on the first answer:
the follow-up's case page shows the first question and answer before the follow-up, the first
question's case shows no earlier turns; /forget leaves none of the texts in the database or Redis.
"""

from __future__ import annotations

import httpx
from markupsafe import escape
from redis.asyncio import Redis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.telegram import texts
from storage.models import Case, ConsentEvent
from storage.repositories.audit import verify_chain
from storage.repositories.cases import earlier_turns
from tests.console.helpers import CLINICIAN, csrf_of
from tests.console.test_handover_e2e import ADA
from tests.support.consent import give_consent
from tests.support.databases import every_row
from tests.support.handover import agreement, choose, with_button
from tests.support.stack import Stack, inprocess_worker, polling_bot
from tests.support.telegram_stub import Call, says
from tests.test_conversation_e2e import ask, command

Sessions = async_sessionmaker[AsyncSession]
FIRST = "What is the amoxicillin dose for a 12 kg child with pneumonia? zq7first"
FOLLOW_UP = "And if she is allergic to penicillin? zq7follow"


async def _ask(stack: Stack, sessionmaker: Sessions, text: str) -> Call:
    """Send a question in the private chat; the bot's answer, once recorded (the user may ask again)."""
    _, message = await ask(stack, sessionmaker, text, ADA)
    assert with_button("hv:ask:", ADA)(message), message.params
    return message


async def _open_case(stack: Stack, answer: Call) -> None:
    """ "Ask a clinician" under ``answer``, then yes."""
    prompt = await agreement(stack.stub, ADA, answer)
    assert await choose(stack.stub, ADA, prompt, "yes") == texts.HANDOVER_OPENED.format(minutes=30)


async def _case_of(sessionmaker: Sessions, question_text: str) -> Case:
    async with sessionmaker() as session:
        return (await session.execute(select(Case).where(Case.question_text == question_text))).scalar_one()


async def _page(console: str, case_id: int) -> str:
    """The case page as the clinician sees it, logged in over HTTP."""
    async with httpx.AsyncClient(base_url=console) as http:
        login = await http.get("/login")
        form = {"csrf": csrf_of(login.text), "name": CLINICIAN[0], "password": CLINICIAN[1], "next": "/"}
        assert (await http.post("/login", data=form)).status_code == 303
        page = await http.get(f"/cases/{case_id}")
    assert page.status_code == 200, page.text
    return page.text


async def _redis_values(url: str, namespace: str) -> bytes:
    """Every key name and value under the namespace, as raw bytes."""
    redis = Redis.from_url(url)
    chunks: list[bytes] = []
    try:
        async for key in redis.scan_iter(match=f"{namespace}:*", count=1000):
            kind = (await redis.type(key)).decode()
            chunks.append(key)
            if kind == "string":
                chunks.append(await redis.get(key) or b"")
            elif kind == "hash":
                chunks += [b for pair in (await redis.hgetall(key)).items() for b in pair]  # type: ignore[misc]
            elif kind == "stream":
                chunks += [v for _, fields in await redis.xrange(key) for v in fields.values()]
            elif kind in ("set", "list", "zset"):
                read = {"set": redis.smembers, "list": lambda k: redis.lrange(k, 0, -1),
                        "zset": lambda k: redis.zrange(k, 0, -1)}[kind]  # fmt: skip
                chunks += list(await read(key))  # type: ignore[operator]
    finally:
        await redis.aclose()
    return b"\n".join(chunks)


async def test_a_follow_ups_case_shows_the_earlier_turns_and_forget_erases_them(
    stack: Stack, sessionmaker: Sessions, clinician_console: str
) -> None:
    stack.audit_anchor().attach(sessionmaker)
    stub = stack.stub
    async with polling_bot(stack, user_messages_per_minute=30), inprocess_worker(stack):  # 9 updates here
        await give_consent(stub, ADA, "service")  # no research: the earlier turns come from memory alone
        first_answer = await _ask(stack, sessionmaker, FIRST)
        follow_answer = await _ask(stack, sessionmaker, FOLLOW_UP)
        await _open_case(stack, follow_answer)
        await _open_case(stack, first_answer)
        follow, first = await _case_of(sessionmaker, FOLLOW_UP), await _case_of(sessionmaker, FIRST)
        assert first.answer_text and follow.answer_text and first.answer_text != follow.answer_text
        assert [(t.turn, t.question, t.answer) for t in earlier_turns(follow)] == [
            (1, FIRST, first.answer_text)
        ]
        assert first.earlier_turns is None  # a first question has no earlier turns

        page = await _page(clinician_console, follow.id)
        thread = page.index('id="earlier"')
        first_q, first_a = page.index(str(escape(FIRST))), page.index(str(escape(first.answer_text)))
        asked = page.index('id="question-text"')
        assert thread < first_q < first_a < asked < page.index(str(escape(FOLLOW_UP)))
        assert str(escape(follow.answer_text)) in page[asked:]
        lone = await _page(clinician_console, first.id)
        assert 'id="earlier"' not in lone and str(escape(FIRST)) in lone and FOLLOW_UP not in lone

        before = len(stub.calls)
        stub.push_command("/forget", user_id=ADA)
        await stub.wait_for("sendMessage", says("I erased everything", ADA), since=before)

    needles = [FIRST, FOLLOW_UP, first.answer_text.strip(), follow.answer_text.strip()]
    rows = await every_row(sessionmaker)
    assert [n for n in needles if n in rows or repr(n)[1:-1] in rows] == []
    held = await _redis_values(stack.redis_url, stack.storage.queue_namespace)
    assert [n for n in needles if n.encode() in held] == []
    for case in (await _case_of_id(sessionmaker, follow.id), await _case_of_id(sessionmaker, first.id)):
        assert case.earlier_turns is None and case.question_text is None and case.outcome == "erased"
    async with sessionmaker() as session:
        query = select(ConsentEvent.new_value).where(ConsentEvent.scope == "clinician")
        assert list((await session.execute(query)).scalars()) == ["granted", "granted"]
        assert await verify_chain(session) > 0


async def _case_of_id(sessionmaker: Sessions, case_id: int) -> Case:
    async with sessionmaker() as session:
        case = await session.get(Case, case_id)
    assert case is not None
    return case


async def test_once_memory_is_gone_the_earlier_turns_come_from_the_research_records(
    stack: Stack, sessionmaker: Sessions
) -> None:
    """Research consent: after /new cleared the memory, the follow-up's case still gets turn 1, from
    the kept question and answer texts (the same text the user was sent)."""
    async with polling_bot(stack, user_messages_per_minute=30), inprocess_worker(stack):
        await give_consent(stack.stub, ADA, "both")
        first_answer, _ = await ask(stack, sessionmaker, FIRST, ADA)
        _, follow_message = await ask(stack, sessionmaker, FOLLOW_UP, ADA)
        await command(stack, "/new", ADA, texts.NEW_CONVERSATION)
        await _open_case(stack, follow_message)
    follow = await _case_of(sessionmaker, FOLLOW_UP)
    assert first_answer.text and first_answer.turn == 1
    assert [(t.turn, t.question, t.answer) for t in earlier_turns(follow)] == [(1, FIRST, first_answer.text)]
