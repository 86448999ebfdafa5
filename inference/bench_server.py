"""``meditron-bot bench --server PATH``: llama.cpp's ``llama-server`` in the conversation section.

The bench starts the binary on the file the worker was measured on, with the worker's sequences as
its slots (``-np``), the same ``-c``, threads and batch size, and the server's own defaults for
everything else (its prompt cache included: slot reuse and the host-memory cache), then runs the
same 16 interleaved conversations through the worker's OpenAI-compatible client: 16 first
questions submitted at once, then their 16 follow-ups, the first answers as the earlier turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import httpx

from inference.batch import Request
from inference.bench_conversation import CONVERSATIONS, first_questions, follow_up_prompts, round_waits
from inference.engine import GenerationResult
from inference.errors import InferenceError
from inference.prompt import build_prompt
from inference.remote import RemoteEngine

START_TIMEOUT_S = 300.0
"""A 2B model on a busy 2-core machine takes a while to load."""
REQUEST_TIMEOUT_S = 3600.0


def tuning_args(settings: dict[str, Any]) -> list[str]:
    """The worker's slots, context, threads and batch size as llama-server options."""
    args = ["-np", str(settings["max_sequences"]), "-c", str(settings["n_ctx"])]
    args += ["-t", str(settings["n_threads"]), "-b", str(settings["n_batch"])]
    return args if settings["use_mmap"] else [*args, "--load-mode", "none"]  # no mmap


def server_args(binary: Path, model: Path, port: int, settings: dict[str, Any]) -> list[str]:
    """The command line: the worker's tuning (:func:`tuning_args`), the server's defaults else."""
    listen = ["--host", "127.0.0.1", "--port", str(port), "--no-webui"]
    return [str(binary), "-m", str(model), *listen, *tuning_args(settings)]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tail(log: IO[bytes]) -> str:
    log.seek(0)
    return log.read().decode("utf-8", "replace")[-2000:]


def _wait_healthy(url: str, process: subprocess.Popen[bytes], log: IO[bytes], timeout_s: float) -> None:
    """Poll /health until the model is loaded; InferenceError with the log's end if it exits or stalls."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise InferenceError(f"llama-server exited with {process.returncode}:\n{_tail(log)}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/health", timeout=2.0).status_code == 200:
                return
        time.sleep(0.2)
    raise InferenceError(f"llama-server not ready after {timeout_s:g} s:\n{_tail(log)}")


@contextlib.contextmanager
def serving(
    args: list[str], port: int, log: IO[bytes], timeout_s: float = START_TIMEOUT_S
) -> Iterator[tuple[str, int]]:
    """Run the llama-server command line ``args`` (listening on ``port``, output to ``log``) until its
    model is loaded: (its URL, its pid) until the block ends, then stopped (killed if it lingers)."""
    process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_healthy(url, process, log, timeout_s)
        yield url, process.pid
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def running_server(binary: Path, model: Path, settings: dict[str, Any]) -> Iterator[tuple[str, int]]:
    """llama-server on a free loopback port: (its URL, its pid) until the block ends, then stopped."""
    port = _free_port()
    args = server_args(binary, model, port, settings)
    with tempfile.TemporaryFile() as log, serving(args, port, log) as run:
        yield run


def peak_rss(pid: int) -> int:
    """VmHWM of process ``pid`` in bytes; 0 when unknown."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path(f"/proc/{pid}/status").read_text(encoding="ascii").splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


async def _round(engine: RemoteEngine, prompts: list[str], max_tokens: int) -> list[GenerationResult]:
    """All ``prompts`` sent at once (the server queues what its slots cannot take)."""
    return list(await asyncio.gather(*(engine.complete(Request(p, max_tokens=max_tokens)) for p in prompts)))


async def _conversations(url: str, question: str, answer_tokens: int) -> dict[str, Any]:
    """The interleaved conversations on the server: follow-ups' mean and worst first token, round time."""
    # A request queued behind busy slots gets no byte until a slot takes it: minutes on a busy CPU.
    engine = RemoteEngine(url, max_sequences=CONVERSATIONS, timeout_s=REQUEST_TIMEOUT_S)
    try:
        await engine.connect(attempts=10)
        await engine.complete(Request(build_prompt(question), max_tokens=1))  # instructions in a slot
        firsts = first_questions(question)
        answers = await _round(engine, [build_prompt(q) for q in firsts], answer_tokens)
        started = time.perf_counter()
        results = await _round(engine, follow_up_prompts(firsts, answers), answer_tokens)
        seconds = time.perf_counter() - started
    finally:
        await engine.aclose()
    mean, worst = round_waits(results)
    return {"server_ttft_mean_s": mean, "server_ttft_max_s": worst, "server_round_s": seconds}


def measure_server_conversations(
    binary: Path, model: Path, settings: dict[str, Any], question: str, answer_tokens: int
) -> dict[str, Any]:
    """Start llama-server with the worker's ``settings``, run the interleaved conversations, stop it."""
    with running_server(binary, model, settings) as (url, pid):
        figures = asyncio.run(_conversations(url, question, answer_tokens))
        figures["server_peak_rss_bytes"] = peak_rss(pid)
    figures["server_options"] = " ".join(tuning_args(settings))
    return figures
