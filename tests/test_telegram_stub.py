"""The Bot API stand-in is faithful: its answers parse in python-telegram-bot, and it reads what PTB sends."""

from __future__ import annotations

import asyncio
import datetime as dtm
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from telegram import (
    Bot,
    ChatMemberAdministrator,
    ChatMemberMember,
    ChatMemberOwner,
    ForceReply,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
    ReplyParameters,
    Update,
)
from telegram.constants import ParseMode
from telegram.error import BadRequest, Forbidden, InvalidToken, NetworkError, RetryAfter

from bot.telegram.ingest import ALLOWED_UPDATES
from tests.support.telegram_stub import BOT_USERNAME, TelegramStub

GROUP = -100777


@pytest_asyncio.fixture
async def bot(telegram_stub: TelegramStub) -> AsyncIterator[Bot]:
    async with Bot(telegram_stub.token, base_url=telegram_stub.base_url) as direct_bot:
        yield direct_bot


async def get_updates(stub: TelegramStub, **params: Any) -> list[dict[str, Any]]:
    """One getUpdates as bot.telegram.ingest sends it (JSON body), the raw result."""
    body = {"limit": 100, "allowed_updates": ALLOWED_UPDATES, **params}
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(f"{stub.base_url}{stub.token}/getUpdates", json=body)
    assert response.json()["ok"]
    result: list[dict[str, Any]] = response.json()["result"]
    return result


async def test_every_pushed_update_parses_in_ptb(telegram_stub: TelegramStub, bot: Bot) -> None:
    stub = telegram_stub
    stub.add_chat(1001)
    keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("Yes", callback_data="fb:yes")]])
    sent = await bot.send_message(1001, "Helpful?", reply_markup=keyboard)
    group = {"user_id": 7, "chat_id": GROUP, "chat_type": "supergroup", "title": "Ward 3"}
    pushed = [
        stub.push_command("start", "abc def", mention_bot=True, **group),
        stub.push_message("and for a baby?", user_id=1001, reply_to_message_id=sent.message_id),
        stub.push_callback("fb:yes", user_id=1001),
        stub.push_callback("lang:es", user_id=1001, language_code="fr", inline=True),
        stub.push_edited_message(2, "fixed typo", user_id=1001),
        stub.push_voice(b"OggS", duration=3, user_id=1001),
        stub.push_non_text("photo", user_id=1001),
        stub.push_channel_post("Clinic closed Friday"),
        stub.push_my_chat_member("member", old_status="left", **group),
    ]

    raw = await get_updates(stub, timeout=0)
    updates = [Update.de_json(u, bot) for u in raw]

    assert [u.update_id for u in updates] == [p["update_id"] for p in pushed]
    command, reply, callback, inline, edited, voice, photo, post, member = updates
    assert command.effective_chat is not None and command.effective_chat.title == "Ward 3"
    assert command.message is not None and command.message.text == f"/start@{BOT_USERNAME} abc def"
    assert command.message.parse_entities(["bot_command"])
    assert reply.message is not None and reply.message.reply_to_message is not None
    assert reply.message.reply_to_message.from_user is not None
    assert reply.message.reply_to_message.from_user.username == BOT_USERNAME
    assert callback.callback_query is not None and callback.callback_query.message is not None
    assert callback.callback_query.message.message_id == sent.message_id  # the message with that button
    assert inline.callback_query is not None and inline.callback_query.message is None
    assert inline.callback_query.inline_message_id and inline.callback_query.from_user.language_code == "fr"
    assert edited.edited_message is not None and edited.edited_message.edit_date is not None
    assert voice.message is not None and voice.message.voice is not None
    assert photo.message is not None and len(photo.message.photo) == 2
    assert post.channel_post is not None and post.channel_post.chat.type == "channel"
    assert member.my_chat_member is not None and member.my_chat_member.new_chat_member.status == "member"
    # The offset after the last one confirms them all, as Telegram forgets confirmed updates.
    assert await get_updates(stub, offset=raw[-1]["update_id"] + 1, timeout=0) == []
    assert set(stub.confirmed_at) == {p["update_id"] for p in pushed}


async def test_a_long_poll_parks_until_a_push(telegram_stub: TelegramStub) -> None:
    poll = asyncio.create_task(get_updates(telegram_stub, timeout=30))
    await telegram_stub.wait_until_polling()
    pushed = telegram_stub.push_message("late")

    assert [u["update_id"] for u in await asyncio.wait_for(poll, 5)] == [pushed["update_id"]]


async def test_messages_replies_and_buttons_round_trip(telegram_stub: TelegramStub, bot: Bot) -> None:
    stub = telegram_stub
    question = stub.push_message("42", user_id=1001)["message"]
    keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("Yes", callback_data="fb:yes")]])

    sent = await bot.send_message(1001, "42", reply_parameters=ReplyParameters(question["message_id"]))
    voted = await bot.send_message(1001, "Helpful?", reply_markup=keyboard)
    forced = await bot.send_message(1001, "Why?", reply_markup=ForceReply(selective=True))

    assert sent.text == "42"  # form-encoded strings are not JSON-decoded
    assert sent.reply_to_message is not None and sent.reply_to_message.message_id == question["message_id"]
    assert voted.reply_markup == keyboard
    assert forced.reply_markup is None  # Telegram returns inline keyboards only
    assert await bot.send_chat_action(1001, "typing")
    query_id = stub.push_callback("fb:yes", user_id=1001)["callback_query"]["id"]
    assert await bot.answer_callback_query(query_id, "noted")
    with pytest.raises(BadRequest, match=r"(?i)query is too old"):
        await bot.answer_callback_query(query_id)
    edited = await bot.edit_message_reply_markup(1001, voted.message_id, reply_markup=None)
    assert isinstance(edited, Message) and edited.reply_markup is None
    with pytest.raises(BadRequest, match=r"(?i)message is not modified"):
        await bot.edit_message_text("Helpful?", 1001, voted.message_id)
    with pytest.raises(BadRequest, match=r"(?i)message to be replied not found"):
        await bot.send_message(1001, "x", reply_parameters=ReplyParameters(999))
    with pytest.raises(BadRequest, match=r"(?i)message is too long"):
        await bot.send_message(1001, "🙂" * 2049)  # 4098 UTF-16 code units
    with pytest.raises(BadRequest, match=r"(?i)message text is empty"):
        await bot.send_message(1001, "   ")
    with pytest.raises(BadRequest, match=r"(?i)parse_mode is not served"):
        await bot.send_message(1001, "<b>x</b>", parse_mode=ParseMode.HTML)
    assert (await bot.send_message(1001, "🙂" * 2048)).text == "🙂" * 2048


async def test_a_pushed_voice_note_downloads_through_get_file(telegram_stub: TelegramStub) -> None:
    """getFile answers a File PTB parses; its file URL (TELEGRAM_FILE_URL form) serves the pushed bytes."""
    audio = b"OggS" + bytes(range(256)) * 4
    update = Update.de_json(telegram_stub.push_voice(audio, duration=7, user_id=1001), None)
    assert update.message is not None and update.message.voice is not None
    assert update.message.voice.file_size == len(audio)
    async with Bot(
        telegram_stub.token, base_url=telegram_stub.base_url, base_file_url=telegram_stub.file_url
    ) as bot:
        file = await bot.get_file(update.message.voice.file_id)
        assert bytes(await file.download_as_bytearray()) == audio
        with pytest.raises(BadRequest, match=r"(?i)invalid file_id"):
            await bot.get_file("AwACnothing")
    assert [c.status for c in telegram_stub.calls_of("file")] == [200]


async def test_chat_members_parse_in_ptb(telegram_stub: TelegramStub, bot: Bot) -> None:
    telegram_stub.add_chat(GROUP, chat_type="supergroup")
    telegram_stub.set_chat_member_status(GROUP, 5, "administrator")
    telegram_stub.set_chat_member_status(GROUP, 6, "creator")

    members = [await bot.get_chat_member(GROUP, user) for user in (5, 6, 7)]

    assert [type(m) for m in members] == [ChatMemberAdministrator, ChatMemberOwner, ChatMemberMember]


async def test_injected_failures_raise_what_ptb_raises(telegram_stub: TelegramStub, bot: Bot) -> None:
    telegram_stub.add_chat(1001)
    telegram_stub.fail_next("sendMessage", retry_after=7)
    telegram_stub.fail_next(
        "sendMessage", error_code=403, description="Forbidden: bot was blocked by the user"
    )
    telegram_stub.fail_network("sendMessage")

    with pytest.raises(RetryAfter) as flood:
        await bot.send_message(1001, "hi")
    with pytest.raises(Forbidden, match="blocked"):
        await bot.send_message(1001, "hi")
    with pytest.raises(NetworkError):
        await bot.send_message(1001, "hi")

    assert flood.value.retry_after == dtm.timedelta(seconds=7)
    assert telegram_stub.calls_of("sendMessage")[0].response["parameters"] == {"retry_after": 7}
    assert (await bot.send_message(1001, "again")).text == "again"  # only the injected calls failed
    assert [c.status for c in telegram_stub.calls_of("sendMessage")] == [429, 403, 502, 200]


async def test_a_wrong_token_and_an_unserved_method_are_refused(
    telegram_stub: TelegramStub, bot: Bot
) -> None:
    with pytest.raises(InvalidToken, match="method not found"):  # PTB reads any 404 so, as Telegram's
        await bot.get_my_commands()
    with pytest.raises(InvalidToken):  # entering initializes, as Application.initialize does: getMe
        async with Bot("5000000001:WRONG", base_url=telegram_stub.base_url):
            pass
    assert [(c.method, c.status) for c in telegram_stub.calls[1:]] == [("getMyCommands", 404), ("getMe", 401)]
