"""The local transcriber process (voice notes): its command line and environment, supervised by `run`."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from bot.process.supervisor import ChildSpec

LOCAL_TRANSCRIBER = "local-transcriber"
STOP_TIMEOUT_S = 30.0
"""How long a transcriber may take to stop; an unfinished recording stays pending for the next."""


def transcriber_spec(redis_url: str, model_dir: Path) -> ChildSpec:
    """The local transcriber as a supervised child of `run` (Whisper never shares the bot's loop)."""
    env = dict(os.environ, REDIS_URL=redis_url, WHISPER_MODEL=str(model_dir))
    env.setdefault("TRANSCRIBER_NAME", LOCAL_TRANSCRIBER)
    port = env.get("METRICS_PORT", "").strip()
    if port.isdigit() and int(port) > 0:  # the bot serves on METRICS_PORT, the worker on the next
        env["METRICS_PORT"] = str(int(port) + 2)
    return ChildSpec(
        "transcriber",
        [sys.executable, "-m", "bot.cli", "transcriber"],
        env=env,
        stop_timeout_s=STOP_TIMEOUT_S,
    )
