"""Settings of the Telegram side (environment or ``.env``); the token has no default."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


def parse_ids(value: str) -> frozenset[int]:
    """Comma- or space-separated Telegram ids (``"12, -1001"``) as a set."""
    return frozenset(int(part) for part in value.replace(",", " ").split())


class BotSettings(BaseSettings):
    """Bot API access, what users are told, access control and fairness limits."""

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
    bot_consumer: str = Field(default="bot", description="prefix of each process's own consumer name")
    # Webhooks (`bot --webhook-url`): the secret Telegram sends back with every update; no default.
    webhook_secret: SecretStr | None = None
    webhook_secret_file: Path | None = Field(default=None, description="a file holding WEBHOOK_SECRET")
    # Danger signs and alerts.
    emergency_number: str = Field(default="", description="e.g. 112; empty: 'your local emergency number'")
    oncall_chat_id: int | None = Field(default=None, description="gets red-flag alerts (pseudonym + rule)")
    admin_chat_id: int | None = Field(default=None, description="gets operational alerts")
    # Fairness.
    busy_queue_size: int = Field(default=50, ge=1, description="longer queue: new questions are refused")
    user_messages_per_minute: int = Field(default=8, ge=1)
    group_messages_per_minute: int = Field(default=30, ge=1)
    consent_hold_s: float = Field(default=900.0, gt=0, description="a group question waits this long")
    # Conversations: memory in Redis only, for this long after the last message.
    conversation_turns: int = Field(default=6, ge=0, le=50, description="earlier turns a prompt holds")
    conversation_idle_min: float = Field(default=30.0, gt=0, le=1440, description="memory expires after")
    # Access: empty lists and invite_only false mean open to everyone.
    allowed_users: str = Field(default="", description="comma-separated Telegram user ids")
    allowed_chats: str = Field(default="", description="comma-separated group chat ids")
    invite_only: bool = False
    # Handover to the study's clinicians.
    handover_alert_min: float = Field(
        default=30.0, gt=0, description="a case unclaimed this long alerts ONCALL_CHAT_ID; the user is told"
    )
    handover_check_s: float = Field(default=60.0, gt=0, description="how often waiting cases are checked")
    handover_offer_h: float = Field(default=2.0, gt=0, description="how long a question can be handed over")
    console_url: str = Field(default="http://127.0.0.1:8080", description="the console, for case links")
    # Operational monitor.
    monitor_interval_s: float = Field(default=60.0, gt=0)
    stall_alert_s: float = Field(default=600.0, gt=0, description="oldest question older: worker down?")
    default_language: str = "en"
    delivery: Literal["whole", "paragraphs"] = Field(
        default="whole", description="paragraphs: finished paragraphs go out at once (at most 3 messages)"
    )
    # Voice notes: longer or larger recordings get a kind refusal (the Bot API serves files up to 20 MB).
    voice_max_seconds: int = Field(default=120, ge=1, le=3600)
    voice_max_bytes: int = Field(default=5_000_000, ge=1_000, le=20_000_000)
    # Disk hygiene: erased text and raw ids leave the files (append-only file, SQLite WAL).
    hygiene_interval_s: float = Field(default=30.0, ge=1, le=50, description="at most this often")
    redis_aof_rewrite: bool = Field(default=False, description="also rewrite an external Redis's file")
    # Grounded answers: the guideline library's passages retrieved for each question.
    library_top_k: int = Field(default=3, ge=0, le=10, description="passages per question (0: off)")
    library_max_tokens: int = Field(default=400, ge=50, le=2000, description="their estimated total")
    library_min_match: float = Field(default=0.3, ge=0, le=1, description="share of question words")

    @property
    def restricted(self) -> bool:
        """Whether only allowlisted people, groups and invite holders may use the bot."""
        return self.invite_only or bool(self.allowed_users.strip() or self.allowed_chats.strip())

    @property
    def allowed_user_ids(self) -> frozenset[int]:
        """Allowlisted user ids."""
        return parse_ids(self.allowed_users)

    @property
    def allowed_chat_ids(self) -> frozenset[int]:
        """Allowlisted group ids."""
        return parse_ids(self.allowed_chats)
