"""``meditron-bot bench --against URL``: the embedded worker and an OpenAI-compatible server, side by side.

The same questions, the same Gemma prompt and greedy decoding on both sides: the worker's batched
engine in this process, and the server through :class:`~inference.remote.RemoteEngine` (what a
worker with INFERENCE_URL does). Each question is made unique at its start ("Case 2-3: ..."), so
neither side reuses more than the instructions. Both are warmed first (prefix evaluated, or in the
server's prompt cache). Serve the same GGUF file on the server for a fair comparison.

Memory: this process's peak RSS for the worker; the server's when it listens on this machine
(found through /proc by its port), else "not visible".
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from inference.batch import Request
from inference.bench import (
    QUESTIONS,
    BenchConfig,
    Progress,
    _proc_status,
    generation_rate,
    reset_peak_rss,
    ttft,
    worker_engine,
)
from inference.prompt import build_prompt, preamble_prompt
from inference.remote import RemoteEngine


@dataclass
class Side:
    """The figures of one side (seconds, tokens per second, bytes)."""

    ttft_s: float = 0.0
    generation_tps: float = 0.0
    together_s: dict[str, float] = field(default_factory=dict)
    peak_rss_bytes: int = 0


@dataclass
class AgainstReport:
    """Both sides of one run."""

    model: str
    url: str
    server_model: str = ""
    answer_tokens: int = 0
    worker: Side = field(default_factory=Side)
    server: Side = field(default_factory=Side)

    def as_dict(self) -> dict[str, Any]:
        """JSON-able figures."""
        return asdict(self)


class _Prompts:
    """Unique prompts: every call gets new case numbers, so no side reuses more than the instructions."""

    def __init__(self) -> None:
        self.round = 0

    def next(self, count: int) -> list[str]:
        self.round += 1
        return [
            build_prompt(f"Case {self.round}-{i + 1}: {QUESTIONS[i % len(QUESTIONS)]}") for i in range(count)
        ]


def measure_embedded(config: BenchConfig, side: Side, prompts: _Prompts, progress: Progress) -> None:
    """The worker's batched engine in this process."""
    reset_peak_rss()
    progress.step("worker: loading the model, evaluating the instructions")
    with worker_engine(config) as batch:
        batch.set_prefix(preamble_prompt())
        batch.generate(prompts.next(1)[0], max_tokens=1)  # warm
        progress.step("worker: time to first token, generation speed")
        side.ttft_s = min(ttft(batch.generate(prompts.next(1)[0], max_tokens=1)) for _ in range(3))
        side.generation_tps = max(
            generation_rate(batch.generate(prompts.next(1)[0], max_tokens=config.decode_tokens + 1))
            for _ in range(2)
        )
        for count in config.counts:
            progress.step(f"worker: {count} questions together")
            requests = [Request(p, max_tokens=config.answer_tokens) for p in prompts.next(count)]
            started = time.perf_counter()
            batch.generate_many(requests)
            side.together_s[str(count)] = time.perf_counter() - started
    side.peak_rss_bytes = _proc_status("VmHWM")


async def _best(times: int, action: Callable[[], Awaitable[float]], pick: Callable[..., float]) -> float:
    return pick([await action() for _ in range(times)])


async def measure_server(
    url: str, config: BenchConfig, report: AgainstReport, prompts: _Prompts, progress: Progress
) -> None:
    """The server through the worker's OpenAI-compatible client."""
    side = report.server
    engine = RemoteEngine(url, max_sequences=max(config.counts))
    try:
        progress.step("server: connecting, warming its prompt cache")
        report.server_model = await engine.connect(attempts=5)
        await engine.complete(Request(prompts.next(1)[0], max_tokens=1))

        async def first() -> float:
            return ttft(await engine.complete(Request(prompts.next(1)[0], max_tokens=1)))

        async def rate() -> float:
            request = Request(prompts.next(1)[0], max_tokens=config.decode_tokens + 1)
            return generation_rate(await engine.complete(request))

        progress.step("server: time to first token, generation speed")
        side.ttft_s = await _best(3, first, min)
        side.generation_tps = await _best(2, rate, max)
        for count in config.counts:
            progress.step(f"server: {count} questions together")
            requests = [Request(p, max_tokens=config.answer_tokens) for p in prompts.next(count)]
            started = time.perf_counter()
            await asyncio.gather(*(engine.complete(request) for request in requests))
            side.together_s[str(count)] = time.perf_counter() - started
    finally:
        await engine.aclose()
    side.peak_rss_bytes = server_peak_rss(url)


def server_peak_rss(url: str) -> int:
    """Peak RSS of the process listening on ``url``'s port on this machine; 0 when not visible."""
    parts = urlsplit(url if "//" in url else f"http://{url}")
    if parts.hostname not in ("127.0.0.1", "localhost", "::1") or parts.port is None:
        return 0
    inodes = _listening_inodes(parts.port)
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in (proc / "fd").iterdir():
                target = str(fd.readlink())
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    return _status_bytes(proc / "status", "VmHWM")
    return 0


def _listening_inodes(port: int) -> set[str]:
    """Socket inodes listening on ``port`` (IPv4 and IPv6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text(encoding="ascii").splitlines()[1:]:
                columns = line.split()
                if len(columns) > 9 and columns[3] == "0A" and int(columns[1].rsplit(":", 1)[1], 16) == port:
                    found.add(columns[9])
    return found


def _status_bytes(path: Path, name: str) -> int:
    """A memory field of a /proc status file, in bytes; 0 when unknown."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in path.read_text(encoding="ascii").splitlines():
            if line.startswith(name + ":"):
                return int(line.split()[1]) * 1024
    return 0


def count_steps(config: BenchConfig) -> int:
    """Progress steps of :func:`run_against`."""
    return 4 + 2 * len(config.counts)


def run_against(config: BenchConfig, url: str, progress: Progress) -> AgainstReport:
    """Measure the embedded worker, then the server at ``url``, on the same questions."""
    report = AgainstReport(model=str(config.model), url=url, answer_tokens=config.answer_tokens)
    prompts = _Prompts()
    measure_embedded(config, report.worker, prompts, progress)
    asyncio.run(measure_server(url, config, report, prompts, progress))
    progress.finish()
    return report


def _ratio(numerator: float, denominator: float) -> str:
    return f"{numerator / denominator:.2f}x" if numerator and denominator else "-"


def _memory(value: int) -> str:
    return f"{value / 1e9:.2f} GB" if value else "not visible"


def format_against(report: AgainstReport) -> str:
    """Both sides in one table; ratios are worker over server time (below 1: the worker is sooner)."""
    worker, server = report.worker, report.server
    ttft = ("time to first token (s)", f"{worker.ttft_s:.3f}", f"{server.ttft_s:.3f}")
    rows = [
        ("measure", "worker (embedded)", f"server ({report.server_model})", "worker / server"),
        (*ttft, _ratio(worker.ttft_s, server.ttft_s)),
    ]
    for count, seconds in worker.together_s.items():
        theirs = server.together_s.get(count, 0.0)
        label = f"{count} question(s) together, {report.answer_tokens} tokens each (s)"
        rows.append((label, f"{seconds:.2f}", f"{theirs:.2f}", _ratio(seconds, theirs)))
    rows.append(
        (
            "generation, one answer (tok/s; higher is better)",
            f"{worker.generation_tps:.1f}",
            f"{server.generation_tps:.1f}",
            _ratio(worker.generation_tps, server.generation_tps),
        )
    )
    rows.append(("peak memory (RSS)", _memory(worker.peak_rss_bytes), _memory(server.peak_rss_bytes), ""))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [f"model: {report.model}; server: {report.url}", ""]
    for index, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
        if index == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(lines)
