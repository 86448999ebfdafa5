"""Settings shared by every process: where data lives and how to reach Redis and the database."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_data_dir() -> Path:
    """The per-user data folder: ``$XDG_DATA_HOME/meditron-bot`` or ``~/.local/share/meditron-bot``."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "meditron-bot"


class StorageSettings(BaseSettings):
    """Data directory, database, Redis, pseudonym key and queue knobs (environment or ``.env``)."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", secrets_dir=None)

    data_dir: Path = Field(default_factory=default_data_dir)
    database_url: SecretStr | None = None
    redis_url: SecretStr | None = None
    pseudonym_key: SecretStr | None = None
    queue_namespace: str = Field(default="meditron", pattern=r"^[A-Za-z0-9_.-]{1,40}$")
    queue_claim_idle_ms: int = Field(default=120_000, ge=1_000)
    queue_max_deliveries: int = Field(default=3, ge=1)
    queue_maxlen: int = Field(default=10_000, ge=100)
    queue_entry_ttl_s: int = Field(default=86_400, ge=60)
    worker_down_s: float = Field(default=30.0, gt=0, description="a worker silent this long is not alive")

    def ensure_data_dir(self) -> Path:
        """Create the data directory (mode 0700) if needed and return it."""
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        return self.data_dir
