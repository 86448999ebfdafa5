"""What a worker process sets up around its work: stop on SIGINT/SIGTERM, health endpoints while it runs."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass

from telemetry.checks import flag_check, redis_check
from telemetry.endpoints import start_endpoints


@dataclass(frozen=True)
class Lifecycle:
    """``stop`` is set by SIGINT/SIGTERM; the process sets ``loaded`` once its model is loaded."""

    stop: asyncio.Event
    loaded: threading.Event


@contextlib.asynccontextmanager
async def running(redis_url: str, name: str) -> AsyncIterator[Lifecycle]:
    """Signals handled and health endpoints (Redis answers, model loaded) served until the block ends."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    loaded = threading.Event()
    endpoints = start_endpoints({"redis": redis_check(redis_url), "model": flag_check(loaded.is_set)}, name)
    try:
        yield Lifecycle(stop, loaded)
    finally:
        if endpoints is not None:
            await asyncio.to_thread(endpoints.stop)
