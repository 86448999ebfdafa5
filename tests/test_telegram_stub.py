"""The Bot API stand-in works with the real python-telegram-bot Application and Bot."""

from __future__ import annotations

import asyncio
import datetime as dtm
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.constants import ParseMode
from telegram.error import BadRequest, EndPointNotFound, Forbidden, InvalidToken, NetworkError, RetryAfter
from telegram.ext import (
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from tests.support.telegram_stub import TelegramStub, running_application

AnyApp = Application[Any, Any, Any, Any, Any, Any]


def build_app(stub: TelegramStub, token: str | None = None) -> AnyApp:
    return ApplicationBuilder().token(token or stub.token).base_url(stub.base_url).build()


@pytest_asyncio.fixture
async def bot(telegram_stub: TelegramStub) -> AsyncIterator[Bot]:
    async with Bot(telegram_stub.token, base_url=telegram_stub.base_url) as direct_bot:
        yield direct_bot


def _origin(task: asyncio.Task[Any]) -> str:
    code = getattr(task.get_coro(), "cr_code", None)
    return str(getattr(code, "co_filename", ""))


async def echo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    assert update.effective_message is not None
    await update.effective_message.reply_text(f"echo: {update.effective_message.text}", do_quote=True)


async def test_echo_handler_receives_pushed_message_and_replies(
    telegram_stub: TelegramStub,
) -> None:
    app = build_app(telegram_stub)
    app.add_handler(MessageHandler(filters.TEXT & ~filters.COMMAND, echo))

    async with running_application(app):
        pushed = telegram_stub.push_message("hello there", user_id=42)
        [call] = await telegram_stub.wait_for("sendMessage")

    assert call.params["chat_id"] == 42
    assert call.params["text"] == "echo: hello there"
    assert call.params["reply_parameters"]["message_id"] == pushed["message"]["message_id"]
    assert call.result["reply_to_message"]["text"] == "hello there"
    assert call.result["from"]["username"] == "meditron_test_bot"
    assert call.result["message_id"] == pushed["message"]["message_id"] + 1
    assert telegram_stub.sent_messages(42) == [call.result]
    methods = [c.method for c in telegram_stub.calls]
    assert methods[:2] == ["getMe", "deleteWebhook"]
    # On stop PTB confirms the fetched updates with one last non-blocking getUpdates.
    last_poll = telegram_stub.calls_of("getUpdates")[-1]
    assert last_poll.params["offset"] == pushed["update_id"] + 1
    assert last_poll.params["timeout"] == 0
    assert all(c.ok for c in telegram_stub.calls)


async def test_shutdown_leaves_no_tasks_behind(telegram_stub: TelegramStub) -> None:
    app = build_app(telegram_stub)
    async with running_application(app):
        await telegram_stub.wait_until_polling()
        telegram_stub.push_message("wake the long poll")
        await telegram_stub.wait_for("getUpdates", lambda c: bool(c.result))
        await telegram_stub.wait_until_polling()  # PTB is parked in its next long poll

    assert not app.running
    assert app.updater is not None
    assert not app.updater.running
    # Only the stub's own aiohttp connection handlers may still be alive; nothing of PTB.
    leftovers = [t for t in asyncio.all_tasks() if "aiohttp" not in _origin(t)]
    assert leftovers == [asyncio.current_task()]


async def test_commands_and_group_chats_are_routed(telegram_stub: TelegramStub) -> None:
    seen: list[tuple[list[str], int, str]] = []

    async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.effective_chat is not None
        seen.append((list(context.args or []), update.effective_chat.id, update.effective_chat.type))
        await update.effective_chat.send_message("started")

    app = build_app(telegram_stub)
    app.add_handler(CommandHandler("start", start))
    async with running_application(app):
        telegram_stub.push_command(
            "start", "abc def", mention_bot=True, chat_type="supergroup", chat_id=-100777, title="Ward 3"
        )
        await telegram_stub.wait_for("sendMessage")

    assert seen == [(["abc", "def"], -100777, "supergroup")]
    assert telegram_stub.sent_messages(-100777)[0]["chat"]["title"] == "Ward 3"


async def test_callback_query_reaches_handler_and_is_answered(
    telegram_stub: TelegramStub,
) -> None:
    async def on_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        assert query is not None
        await query.answer("noted")
        await query.edit_message_text(f"you chose {query.data}")

    app = build_app(telegram_stub)
    app.add_handler(CallbackQueryHandler(on_button))
    telegram_stub.add_chat(1001)
    async with running_application(app):
        keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("Yes", callback_data="fb:yes")]])
        sent = await app.bot.send_message(1001, "Helpful?", reply_markup=keyboard)
        pushed = telegram_stub.push_callback("fb:yes", user_id=1001)
        [answer] = await telegram_stub.wait_for("answerCallbackQuery")
        [edit] = await telegram_stub.wait_for("editMessageText")

    assert pushed["callback_query"]["message"]["message_id"] == sent.message_id
    assert answer.params == {"callback_query_id": pushed["callback_query"]["id"], "text": "noted"}
    assert edit.params["message_id"] == sent.message_id
    current = telegram_stub.message(1001, sent.message_id)
    assert current is not None
    assert current["text"] == "you chose fb:yes"
    assert "reply_markup" not in current  # editMessageText without markup drops the keyboard
    # The form-encoded reply_markup was decoded back into a dict.
    send = telegram_stub.calls_of("sendMessage")[0]
    assert send.params["reply_markup"]["inline_keyboard"][0][0]["callback_data"] == "fb:yes"


async def test_callback_answered_twice_is_refused(telegram_stub: TelegramStub, bot: Bot) -> None:
    query_id = telegram_stub.push_callback("x")["callback_query"]["id"]
    assert await bot.answer_callback_query(query_id)
    with pytest.raises(BadRequest, match="query is too old"):
        await bot.answer_callback_query(query_id)


async def test_429_injection_raises_retry_after(telegram_stub: TelegramStub, bot: Bot) -> None:
    telegram_stub.add_chat(1001)
    telegram_stub.fail_next("sendMessage", retry_after=7)

    with pytest.raises(RetryAfter) as caught:
        await bot.send_message(1001, "hi")

    assert caught.value.retry_after == dtm.timedelta(seconds=7)
    failed = telegram_stub.calls_of("sendMessage")[0]
    assert failed.status == 429
    assert failed.response["parameters"] == {"retry_after": 7}
    assert (await bot.send_message(1001, "hi")).text == "hi"  # only the next call failed


async def test_other_injected_errors_map_to_ptb_exceptions(telegram_stub: TelegramStub, bot: Bot) -> None:
    telegram_stub.add_chat(1001)
    telegram_stub.fail_next(
        "sendMessage", error_code=403, description="Forbidden: bot was blocked by the user", times=2
    )
    for _ in range(2):
        with pytest.raises(Forbidden, match="blocked"):
            await bot.send_message(1001, "hi")
    assert await bot.send_message(1001, "hi")


@pytest.mark.parametrize("mode", ["bad_gateway", "drop"])
async def test_network_failure_raises_network_error(telegram_stub: TelegramStub, bot: Bot, mode: Any) -> None:
    telegram_stub.add_chat(1001)
    telegram_stub.fail_network("sendMessage", mode=mode)

    with pytest.raises(NetworkError):
        await bot.send_message(1001, "hi")

    assert (await bot.send_message(1001, "again")).text == "again"


async def test_wrong_token_is_rejected_on_initialize(telegram_stub: TelegramStub) -> None:
    app = build_app(telegram_stub, token="5000000001:WRONG")

    async def run() -> None:
        async with running_application(app):
            pass

    with pytest.raises(InvalidToken):
        await run()
    [call] = telegram_stub.calls_of("getMe")
    assert call.status == 401
    assert call.response == {"ok": False, "error_code": 401, "description": "Unauthorized"}


async def test_unknown_method_is_not_found(telegram_stub: TelegramStub, bot: Bot) -> None:
    with pytest.raises(EndPointNotFound):
        await bot.do_api_request("fooBar")
    assert telegram_stub.calls_of("fooBar")[0].response["description"] == ("Not Found: method not found")


async def test_markdown_v2_requires_escaping(telegram_stub: TelegramStub, bot: Bot) -> None:
    telegram_stub.add_chat(1001)
    with pytest.raises(BadRequest, match=r"(?i)can't parse entities: Character '\.' is reserved"):
        await bot.send_message(1001, "1.5!", parse_mode=ParseMode.MARKDOWN_V2)
    with pytest.raises(BadRequest, match=r"(?i)can't find end of Bold entity"):
        await bot.send_message(1001, "*dose", parse_mode=ParseMode.MARKDOWN_V2)

    ok = await bot.send_message(1001, "*Dose* 1\\.5\\! `a.b`", parse_mode=ParseMode.MARKDOWN_V2)

    assert ok.text == "Dose 1.5! a.b"
    assert [(e.type, e.offset, e.length) for e in ok.entities] == [("bold", 0, 4), ("code", 10, 3)]


async def test_html_requires_balanced_known_tags(telegram_stub: TelegramStub, bot: Bot) -> None:
    telegram_stub.add_chat(1001)
    for bad in ("<b>open", "a < b", "<b><i>x</b></i>", "<script>x</script>"):
        with pytest.raises(BadRequest, match=r"(?i)can't parse entities"):
            await bot.send_message(1001, bad, parse_mode=ParseMode.HTML)

    ok = await bot.send_message(
        1001, "<b>BP</b> &lt;90 &amp; <a href='https://x.org'>ref</a>", parse_mode=ParseMode.HTML
    )

    assert ok.text == "BP <90 & ref"
    assert [(e.type, e.offset, e.length) for e in ok.entities] == [("bold", 0, 2), ("text_link", 9, 3)]


async def test_text_length_limits(telegram_stub: TelegramStub, bot: Bot) -> None:
    telegram_stub.add_chat(1001)
    with pytest.raises(BadRequest, match=r"(?i)message is too long"):
        await bot.send_message(1001, "x" * 4097)
    with pytest.raises(BadRequest, match=r"(?i)message text is empty"):
        await bot.send_message(1001, "   ")

    assert len((await bot.send_message(1001, "x" * 4096)).text or "") == 4096


async def test_edit_with_same_content_is_not_modified(telegram_stub: TelegramStub, bot: Bot) -> None:
    telegram_stub.add_chat(1001)
    sent = await bot.send_message(1001, "v1")
    await bot.edit_message_text("v2", chat_id=1001, message_id=sent.message_id)
    with pytest.raises(BadRequest, match=r"(?i)message is not modified"):
        await bot.edit_message_text("v2", chat_id=1001, message_id=sent.message_id)
    assert await bot.delete_message(1001, sent.message_id)
    with pytest.raises(BadRequest, match=r"(?i)message to delete not found"):
        await bot.delete_message(1001, sent.message_id)


async def test_get_updates_honours_offset_and_limit(telegram_stub: TelegramStub, bot: Bot) -> None:
    first = telegram_stub.push_message("one")["update_id"]
    second = telegram_stub.push_message("two")["update_id"]

    assert [u.update_id for u in await bot.get_updates(limit=1)] == [first]
    assert [u.update_id for u in await bot.get_updates(offset=second)] == [second]
    assert await bot.get_updates(offset=second + 1) == ()


async def test_long_poll_wakes_on_push(telegram_stub: TelegramStub, bot: Bot) -> None:
    poll = asyncio.create_task(bot.get_updates(timeout=30, read_timeout=40))
    await telegram_stub.wait_until_polling()
    pushed = telegram_stub.push_message("late")

    updates = await asyncio.wait_for(poll, 5)

    assert [u.update_id for u in updates] == [pushed["update_id"]]


async def test_chat_member_status_is_configurable(telegram_stub: TelegramStub, bot: Bot) -> None:
    telegram_stub.push_message("hi", user_id=5, chat_id=-100500, chat_type="group")
    telegram_stub.set_chat_member_status(-100500, 5, "administrator")

    admin = await bot.get_chat_member(-100500, 5)
    other = await bot.get_chat_member(-100500, 6)

    assert admin.status == "administrator"
    assert other.status == "member"
    assert (await bot.get_chat(-100500)).title == "Field Team"


async def test_commands_round_trip(telegram_stub: TelegramStub, bot: Bot) -> None:
    assert await bot.set_my_commands([("start", "Begin"), ("help", "How to use")])
    commands = await bot.get_my_commands()
    assert [c.command for c in commands] == ["start", "help"]
    with pytest.raises(BadRequest, match=r"(?i)BOT_COMMAND_INVALID"):
        await bot.set_my_commands([("Bad-Name", "x")])


async def test_non_text_and_edited_updates_reach_handlers(telegram_stub: TelegramStub) -> None:
    kinds: list[str] = []

    async def record(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        assert message is not None
        kind = "voice" if message.voice else "edited" if update.edited_message else "other"
        kinds.append(kind)
        await message.reply_text(kind)

    app = build_app(telegram_stub)
    app.add_handler(MessageHandler(filters.VOICE | filters.UpdateType.EDITED_MESSAGE, record))
    async with running_application(app):
        telegram_stub.push_non_text("voice")
        telegram_stub.push_edited_message(1, "fixed typo")
        await telegram_stub.wait_for("sendMessage", count=2)

    assert kinds == ["voice", "edited"]


async def test_wait_for_times_out_with_summary(telegram_stub: TelegramStub, bot: Bot) -> None:
    await bot.get_me()
    with pytest.raises(AssertionError, match=r"sendMessage(.|\n)*getMe"):
        await telegram_stub.wait_for("sendMessage", timeout=0.2)


async def test_running_application_surfaces_handler_errors(
    telegram_stub: TelegramStub,
) -> None:
    reached = asyncio.Event()

    async def broken(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        reached.set()
        raise RuntimeError("boom")

    app = build_app(telegram_stub)
    app.add_handler(MessageHandler(filters.TEXT, broken))

    async def run() -> None:
        async with running_application(app):
            telegram_stub.push_message("x")
            await reached.wait()

    with pytest.raises(AssertionError, match="boom"):
        await run()
