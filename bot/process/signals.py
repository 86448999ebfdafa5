"""Stop requests: SIGINT (Ctrl-C) and SIGTERM turned into an event the running loop can wait on."""

from __future__ import annotations

import asyncio
import signal


def stop_event() -> asyncio.Event:
    """An event set by SIGINT or SIGTERM (Ctrl-C or a stop request); call it inside the running loop."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop
