"""Where a process serves its metrics and health endpoints (METRICS_PORT; unset: not served)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class TelemetrySettings(BaseSettings):
    """METRICS_PORT (0: any free port, logged) and METRICS_HOST (default: this machine only)."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    metrics_host: str = "127.0.0.1"
