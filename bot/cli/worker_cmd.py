"""``worker`` and ``transcriber``: one inference process alone (nothing of the Telegram side is imported)."""

from __future__ import annotations

import argparse
import asyncio

from bot.process.lifecycle import running
from bot.process.private_redis import shared_redis_url
from inference.settings import InferenceSettings
from storage.settings import StorageSettings


def worker(_: argparse.Namespace) -> int:
    """One worker alone, until SIGINT/SIGTERM; an unfinished question stays pending for the next start."""
    from inference.serve import serve

    storage = StorageSettings()
    redis_url = shared_redis_url(storage)

    async def main() -> int:
        async with running(redis_url, "worker") as process:
            return await serve(InferenceSettings(), storage, redis_url, process.stop, process.loaded)

    return asyncio.run(main())


def transcriber(_: argparse.Namespace) -> int:
    """One voice-note transcriber alone (WHISPER_MODEL, downloaded first when it is a name not yet here)."""
    from inference.transcriber import serve_transcriber

    storage = StorageSettings()
    redis_url = shared_redis_url(storage)

    async def main() -> int:
        async with running(redis_url, "transcriber") as process:
            return await serve_transcriber(
                InferenceSettings(), storage, redis_url, process.stop, process.loaded
            )

    return asyncio.run(main())
