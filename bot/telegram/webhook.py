"""Webhook intake: Telegram POSTs each update; it is stored in the update log before the 200 is returned.

A request without the right ``X-Telegram-Bot-Api-Secret-Token`` is refused (403) and nothing of it is
read further. An update is stored deduplicated on its update_id (storage/queue/updates.py), so one that
Telegram retries, or that reaches two replicas behind a load balancer, is handled once; the consumer side
is the ingest's (``UpdateIngest.start(poll=False)``). When Redis cannot store it the answer is 503 and
Telegram sends it again later. The listener runs in a thread, event loop and Redis connection of its
own, so handlers keeping the bot's loop busy never delay the 200.
"""

from __future__ import annotations

import hmac
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import structlog
from redis.exceptions import RedisError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bot import metrics
from bot.errors import ConfigurationError
from bot.process.telemetry.server import ThreadedServer
from storage.queue.updates import UpdateLog, update_id_of

log = structlog.get_logger("bot.webhook")

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"  # noqa: S105 (a header name)
_SECRET_CHARS = re.compile(r"[A-Za-z0-9_-]{1,256}")  # what Telegram accepts as secret_token
MAX_BODY_BYTES = 1 << 20


@dataclass(frozen=True)
class WebhookConfig:
    """Where Telegram sends updates (``url``, through any load balancer), where this process listens."""

    url: str
    host: str
    port: int
    secret: str

    def __repr__(self) -> str:  # the secret never appears in a log or an error
        return f"WebhookConfig(url=<set>, host={self.host!r}, port={self.port})"


def load_secret(value: str | None, file: Path | None) -> str:
    """WEBHOOK_SECRET, else the first line of WEBHOOK_SECRET_FILE; there is no default."""
    if value is None and file is not None:
        try:
            value = file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigurationError(
                "WEBHOOK_SECRET_FILE", f"cannot read WEBHOOK_SECRET_FILE ({type(exc).__name__})"
            ) from None
    if not value:
        raise ConfigurationError(
            "WEBHOOK_SECRET",
            "a webhook needs WEBHOOK_SECRET (or WEBHOOK_SECRET_FILE): 1-256 of A-Z a-z 0-9 _ -",
        )
    if not _SECRET_CHARS.fullmatch(value):
        raise ConfigurationError("WEBHOOK_SECRET", "WEBHOOK_SECRET must be 1-256 of A-Z a-z 0-9 _ -")
    return value


def webhook_app(secret: str, updates: Callable[[], UpdateLog]) -> Starlette:
    """The ASGI app: POST (any path) with the secret header stores the update; anything else is refused."""
    expected = secret.encode()

    async def receive(request: Request) -> Response:
        given = request.headers.get(SECRET_HEADER, "").encode()
        if not hmac.compare_digest(given, expected):
            metrics.WEBHOOK_REQUESTS.labels("refused").inc()
            return Response(status_code=403)
        body = await request.body()
        try:
            raw: Any = json.loads(body) if len(body) <= MAX_BODY_BYTES else None
        except ValueError:
            raw = None
        if update_id_of(raw) is None:  # not an update (Telegram always sends an object with update_id)
            metrics.WEBHOOK_REQUESTS.labels("malformed").inc()
            return Response(status_code=400)
        started = time.perf_counter()
        try:
            new = await updates().store([raw])
        except (RedisError, OSError) as exc:
            log.warning("webhook.store_failed", error=type(exc).__name__)
            metrics.WEBHOOK_REQUESTS.labels("unavailable").inc()
            return Response(status_code=503)
        metrics.UPDATE_STORE_SECONDS.observe(time.perf_counter() - started)
        metrics.WEBHOOK_REQUESTS.labels("stored" if new else "duplicate").inc()
        return Response(status_code=200)

    return Starlette(routes=[Route("/{path:path}", receive, methods=["POST"])])


class WebhookListener:
    """The intake server: its own thread, loop and update log (a client of the bot's Redis)."""

    def __init__(self, config: WebhookConfig, make_log: Callable[[], UpdateLog]) -> None:
        self._make_log = make_log
        self._log: UpdateLog | None = None
        self.server = ThreadedServer(
            webhook_app(config.secret, self._updates), config.host, config.port,
            name="webhook", on_start=self._open, on_stop=self._close,
        )  # fmt: skip

    def _updates(self) -> UpdateLog:
        assert self._log is not None
        return self._log

    async def _open(self) -> None:
        self._log = self._make_log()

    async def _close(self) -> None:
        if self._log is not None:
            await self._log.redis.aclose()

    @property
    def port(self) -> int:
        """The port listened on."""
        return self.server.port

    def start(self) -> None:
        """Listen (a port in use raises ListenError here)."""
        self.server.start()
        log.info("webhook.listening", port=self.port)

    def stop(self) -> None:
        """Stop listening; requests in progress are answered first."""
        self.server.stop()


async def set_webhook(api_url: str, config: WebhookConfig, allowed_updates: list[str]) -> None:
    """Ask Telegram to send updates to ``config.url`` with the secret; ConfigurationError when refused.

    Every replica sets the same URL (the load balancer's): the call is idempotent.
    """
    params = {"url": config.url, "secret_token": config.secret, "allowed_updates": allowed_updates}
    try:
        body = await _call(api_url, "setWebhook", params)
    except httpx.HTTPError as exc:
        raise ConfigurationError(
            "--webhook-url", f"cannot reach the Bot API to set the webhook ({type(exc).__name__})"
        ) from None
    if not body.get("ok"):
        raise ConfigurationError(
            "--webhook-url", f"Telegram refused setWebhook: {str(body.get('description', ''))[:200]}"
        )
    log.info("webhook.set")


async def delete_webhook(api_url: str) -> None:
    """Remove a webhook left by an earlier webhook deployment, so that long polling works (as PTB does)."""
    try:
        body = await _call(api_url, "deleteWebhook", {"drop_pending_updates": False})
    except httpx.HTTPError as exc:
        log.warning("webhook.delete_failed", error=type(exc).__name__)
        return
    if not body.get("ok"):
        log.warning("webhook.delete_refused", status=body.get("error_code"))


async def _call(api_url: str, method: str, params: dict[str, Any]) -> dict[str, Any]:
    """One Bot API call with a JSON body (``api_url`` carries the token: never logged)."""
    async with httpx.AsyncClient(timeout=15) as client:
        response = await client.post(f"{api_url}/{method}", json=params)
    try:
        body = response.json()
    except ValueError:
        body = None
    return body if isinstance(body, dict) else {"ok": False, "error_code": response.status_code}
