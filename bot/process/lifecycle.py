"""What a worker or transcriber process sets up around its work: stop on SIGINT/SIGTERM, health endpoints."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass

from bot.process.signals import stop_event
from bot.process.telemetry.checks import flag_check, redis_check
from bot.process.telemetry.endpoints import start_endpoints


@dataclass(frozen=True)
class Lifecycle:
    """``stop`` is set by SIGINT/SIGTERM; the process sets ``loaded`` once its model is loaded."""

    stop: asyncio.Event
    loaded: threading.Event


@contextlib.asynccontextmanager
async def running(redis_url: str, name: str) -> AsyncIterator[Lifecycle]:
    """Signals handled and health endpoints (Redis answers, model loaded) served until the block ends."""
    stop = stop_event()
    loaded = threading.Event()
    endpoints = start_endpoints({"redis": redis_check(redis_url), "model": flag_check(loaded.is_set)}, name)
    try:
        yield Lifecycle(stop, loaded)
    finally:
        if endpoints is not None:
            await asyncio.to_thread(endpoints.stop)
