"""Settings of the Telegram side (environment or ``.env``); the token has no default."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class BotSettings(BaseSettings):
    """Bot API access and what users are told."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    telegram_bot_token: SecretStr
    telegram_api_url: str = "https://api.telegram.org/bot"
    telegram_file_url: str = "https://api.telegram.org/file/bot"
    max_question_chars: int = Field(default=2000, ge=10, le=4000)
    typing_interval_s: float = Field(default=4.5, gt=0)
    typing_max_s: float = Field(default=600.0, gt=0)
    retention_days: int = Field(default=180, ge=1)
    reviewers: str = "the study's clinical research team"
    poll_timeout_s: int = Field(default=30, ge=0)
    bot_consumer: str = "bot"
