"""Configuration errors in one line: which environment variables are missing or wrong (never values)."""

from __future__ import annotations

from pydantic import ValidationError

ENV_NAMES = {"telegram_bot_token": "TELEGRAM_BOT_TOKEN", "trusted_proxies": "CONSOLE_TRUSTED_PROXIES"}


def describe_validation_error(exc: ValidationError) -> str:
    """One line naming the environment variables that are missing or wrong (never their values)."""
    parts = []
    for error in exc.errors():
        field = str(error["loc"][0]) if error["loc"] else "?"
        name = ENV_NAMES.get(field, field.upper())
        if error["type"] == "missing":
            parts.append(f"{name} is not set")
        else:
            parts.append(f"{name} is not valid ({error['msg']})")
    hint = " (get a token from @BotFather)" if "TELEGRAM_BOT_TOKEN is not set" in parts else ""
    return "; ".join(parts) + hint
