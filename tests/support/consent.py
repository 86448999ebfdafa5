"""Giving consent as a user does, through the Telegram stand-in: /start, the prompt with buttons, a tap."""

from __future__ import annotations

from collections.abc import Callable

from tests.support.telegram_stub import Call, TelegramStub


def with_buttons(call: Call) -> bool:
    """A message sent or edited with buttons."""
    return bool(call.params.get("reply_markup"))


def consent_prompt(user: int) -> Callable[[Call], bool]:
    """A sendMessage to ``user`` with buttons: the consent prompt."""
    return lambda call: with_buttons(call) and int(call.params["chat_id"]) == user


def buttons(prompt: Call) -> list[str]:
    """The callback data of the prompt's buttons, in order."""
    return [row[0]["callback_data"] for row in prompt.params["reply_markup"]["inline_keyboard"]]


def button(prompt: Call, choice: str) -> str:
    """The callback data of the prompt's ``choice`` button (both, service or decline)."""
    return next(data for data in buttons(prompt) if data.split(":")[1] == choice)


async def give_consent(
    stub: TelegramStub,
    user: int,
    choice: str = "both",
    *,
    start: str = "",
    language: str = "en",
    timeout: float = 30.0,
) -> Call:
    """/start (``start``: its argument, an invite code), then tap ``choice``; the prompt, once edited."""
    before = len(stub.calls)
    stub.push_command("/start", start, user_id=user, language_code=language)
    prompt = (await stub.wait_for("sendMessage", consent_prompt(user), since=before, timeout=timeout))[-1]
    stub.push_callback(
        button(prompt, choice), user_id=user, message_id=prompt.result["message_id"], language_code=language
    )
    edited = lambda call: int(call.params["chat_id"]) == user  # noqa: E731
    await stub.wait_for("editMessageText", edited, since=before, timeout=timeout)
    return prompt


async def give_consent_all(
    stub: TelegramStub, users: list[int], choice: str = "service", *, timeout: float = 120.0
) -> None:
    """Every user: /start, then ``choice``, all at once (each prompt is answered as it comes)."""
    before = len(stub.calls)
    for user in users:
        stub.push_command("/start", user_id=user)
    prompts = await stub.wait_for(
        "sendMessage", with_buttons, count=len(users), since=before, timeout=timeout
    )
    for prompt in prompts:
        user = int(prompt.params["chat_id"])
        stub.push_callback(button(prompt, choice), user_id=user, message_id=prompt.result["message_id"])
    await stub.wait_for("editMessageText", count=len(users), since=before, timeout=timeout)
