"""Settings of the review console (environment or ``.env``, prefix ``CONSOLE_``)."""

from __future__ import annotations

import ipaddress

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class ConsoleSettings(BaseSettings):
    """Which reverse proxies may say who the client is (``X-Forwarded-For``); none by default."""

    model_config = SettingsConfigDict(env_prefix="CONSOLE_", env_file=".env", extra="ignore")

    trusted_proxies: str = Field(
        default="",
        description="comma-separated addresses or networks of reverse proxies whose X-Forwarded-For "
        "and X-Forwarded-Proto are believed; empty: the headers are ignored",
    )

    @field_validator("trusted_proxies")
    @classmethod
    def _addresses(cls, value: str) -> str:
        """Every entry must be an IP address or network (no host names, no ``*``)."""
        for entry in proxy_list(value):
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"{entry!r} is not an IP address or network") from None
        return value

    @property
    def proxies(self) -> tuple[str, ...]:
        """The trusted proxy addresses and networks."""
        return proxy_list(self.trusted_proxies)


def proxy_list(value: str) -> tuple[str, ...]:
    """Comma- or space-separated entries as a tuple."""
    return tuple(value.replace(",", " ").split())
