"""``worker``: one model worker alone (it imports nothing of the Telegram side, nor exports its metrics)."""

from __future__ import annotations

import argparse
import asyncio

from bot.process.private_redis import shared_redis_url
from inference.settings import InferenceSettings
from storage.settings import StorageSettings


def worker(_: argparse.Namespace) -> int:
    """One worker alone."""
    from inference.serve import serve

    storage = StorageSettings()
    return asyncio.run(serve(InferenceSettings(), storage, shared_redis_url(storage)))
