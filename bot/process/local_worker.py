"""The local worker process: its command line and environment, supervised by `run` or started by `ask`."""

from __future__ import annotations

import os
import subprocess
import sys

from bot.process.supervisor import ChildSpec, die_with_parent, end_process

LOCAL_WORKER = "local-worker"
STOP_TIMEOUT_S = 30.0
"""How long a worker may take to stop; SIGTERM leaves its unfinished question pending for the next."""


def worker_argv() -> list[str]:
    """The command that starts one worker (the model never shares the bot's event loop)."""
    return [sys.executable, "-m", "bot.cli", "worker"]


def worker_env(redis_url: str, model_path: str) -> dict[str, str]:
    """The worker's environment: this one plus the Redis URL and the model file (none: INFERENCE_URL);
    its metrics on the port after the bot's."""
    env = dict(os.environ, REDIS_URL=redis_url)
    if model_path:
        env["MODEL_PATH"] = model_path
    env.setdefault("WORKER_NAME", LOCAL_WORKER)
    port = env.get("METRICS_PORT", "").strip()
    if port.isdigit() and int(port) > 0:  # the bot of this machine serves on METRICS_PORT itself
        env["METRICS_PORT"] = str(int(port) + 1)
    return env


def worker_spec(redis_url: str, model_path: str) -> ChildSpec:
    """The local worker as a supervised child of `run`."""
    return ChildSpec(
        "worker", worker_argv(), env=worker_env(redis_url, model_path), stop_timeout_s=STOP_TIMEOUT_S
    )


def start_worker(redis_url: str, model_path: str) -> subprocess.Popen[bytes]:
    """A worker child for ``ask`` (unsupervised; it still ends with this process on Linux)."""
    return subprocess.Popen(
        worker_argv(), env=worker_env(redis_url, model_path),
        stdin=subprocess.DEVNULL, preexec_fn=die_with_parent(),
    )  # fmt: skip


def stop_worker(child: subprocess.Popen[bytes]) -> None:
    """SIGTERM the worker; its unfinished question stays pending for the next start."""
    end_process(child, STOP_TIMEOUT_S)
