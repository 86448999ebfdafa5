"""Asking for a clinician as a user does, through the Telegram stand-in: the button or /human, yes or no."""

from __future__ import annotations

from collections.abc import Callable

from bot.telegram import texts
from tests.support.telegram_stub import Call, TelegramStub


def buttons(call: Call) -> list[str]:
    """Every callback_data on a sent message's keyboard."""
    markup = call.params.get("reply_markup") or {}
    return [b["callback_data"] for row in markup.get("inline_keyboard", []) for b in row]


def with_button(prefix: str, chat_id: int) -> Callable[[Call], bool]:
    """A message to ``chat_id`` with a button whose callback data starts with ``prefix``."""
    return lambda c: (
        int(c.params.get("chat_id", 0)) == chat_id and any(b.startswith(prefix) for b in buttons(c))
    )


async def agreement(stub: TelegramStub, user: int, under: Call | None = None, timeout: float = 30.0) -> Call:
    """Tap "Ask a clinician" under the message ``under`` (or send /human when None); the yes/no question."""
    before = len(stub.calls)
    if under is None:
        stub.push_command("/human", user_id=user)
    else:
        tap = next(b for b in buttons(under) if b.startswith("hv:ask:"))
        stub.push_callback(tap, user_id=user, message_id=under.result["message_id"])
    prompt = (
        await stub.wait_for("sendMessage", with_button("hv:yes:", user), since=before, timeout=timeout)
    )[-1]
    assert prompt.params["text"] == texts.HANDOVER_CONSENT
    assert [b.split(":")[1] for b in buttons(prompt)] == ["yes", "no"]
    return prompt


async def choose(stub: TelegramStub, user: int, prompt: Call, choice: str, timeout: float = 30.0) -> str:
    """Press ``choice`` (yes or no) under the agreement question; the text it was replaced with."""
    before = len(stub.calls)
    data = next(b for b in buttons(prompt) if b.startswith(f"hv:{choice}:"))
    stub.push_callback(data, user_id=user, message_id=prompt.result["message_id"])
    edited = lambda c: int(c.params.get("chat_id", 0)) == user  # noqa: E731
    return str(
        (await stub.wait_for("editMessageText", edited, since=before, timeout=timeout))[-1].params["text"]
    )
