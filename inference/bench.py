"""``meditron-bot bench``: the worker against the plain path, on this machine, in one run.

The plain path is what a typical bot does: one ``llama_cpp.Llama`` generation per question, the
whole prompt evaluated each time, questions answered one after another (:meth:`Engine.generate`
with ``fresh=True``). The worker is :class:`~inference.batch.BatchEngine`: the instruction prefix
evaluated once, questions decoded together. Without a model file the benchmark writes (once) a
random-weight GGUF with the exact Gemma2-2B shapes in Q4_K_M: it costs what the real model costs.
"""

from __future__ import annotations

import contextlib
import functools
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

from tqdm import tqdm

from inference.batch import BatchEngine, Request
from inference.bench_conversation import (
    CONVERSATIONS,
    ConversationFigures,
    conversation_targets,
    measure_follow_ups,
    table_lines,
)
from inference.engine import Engine, GenerationResult
from inference.errors import InferenceError
from inference.modelfile import validate_gguf
from inference.prompt import build_prompt, preamble_prompt

QUESTIONS = (
    "A 3 year old child weighing 12 kg has had fever and fast breathing for two days and is not eating "
    "well. What dose of amoxicillin should I give and which danger signs mean urgent referral?",
    "A pregnant woman at 32 weeks has a severe headache, blurred vision and swollen feet since this "
    "morning. What should I check first and what can I give before the transfer?",
    "An adult with watery diarrhoea for one day is very thirsty and has sunken eyes but can still drink. "
    "How much oral rehydration solution should he get and how often should I reassess?",
    "A baby of two weeks feeds poorly, feels cold and has yellow skin and eyes spreading to the legs. "
    "Which signs should make me refer at once and what do I tell the mother?",
    "A man cut his hand with a rusty machete two hours ago; the wound is deep and dirty. How should I "
    "clean it, does he need tetanus vaccine, and when should it be closed?",
    "A child of 5 with a positive malaria rapid test vomits everything and is very sleepy. What should "
    "I give before referral and how do I dose rectal artesunate for 18 kg?",
    "A woman gave birth an hour ago at home and is bleeding heavily; the placenta is out. What are the "
    "first steps while we wait for transport, and which drug and dose should I use?",
    "A teenager was bitten by a dog on the leg yesterday in a village with rabies cases. How do I clean "
    "the bite, which vaccine schedule applies, and when is immunoglobulin needed?",
)
"""Typical field questions (about 40 tokens each with Gemma's tokenizer)."""

TARGETS = {
    "generation_vs_bare": 0.95,
    "ttft_speedup": 3.0,
    "four_questions_speedup": 1.5,
    "rss_over_model_bytes": 700 * 10**6,
}


@dataclass(frozen=True)
class BenchConfig:
    """What to benchmark, and how the engines are configured."""

    model: Path
    n_threads: int
    n_ctx: int = 4096
    n_batch: int = 512
    use_mmap: bool = True
    max_sequences: int = 4
    answer_tokens: int = 32
    counts: tuple[int, ...] = (1, 2, 4, 8)
    decode_tokens: int = 32
    conversations: bool = True
    pool_mb: int = 256
    server: Path | None = None
    """A llama-server binary to run the interleaved conversations on too (``--server``)."""


@dataclass
class BenchReport:
    """Every figure of one run (seconds, tokens per second, bytes)."""

    model: str
    model_bytes: int
    config: dict[str, Any]
    load_average: str = ""
    prefix_tokens: int = 0
    question_tokens: int = 0
    ttft_plain_s: float = 0.0
    ttft_plain_warm_s: float = 0.0
    ttft_worker_s: float = 0.0
    generation_worker_tps: float = 0.0
    generation_bare_tps: float = 0.0
    together_plain_s: dict[str, float] = field(default_factory=dict)
    together_worker_s: dict[str, float] = field(default_factory=dict)
    peak_rss_worker_bytes: int = 0
    peak_rss_process_bytes: int = 0
    read_bandwidth_bps: float = 0.0
    conversation: ConversationFigures | None = None
    targets: dict[str, dict[str, Any]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The report as plain JSON-able data."""
        return asdict(self)


# ---------------------------------------------------------------------------------------------
# Progress


class Progress:
    """The bench's steps as a tqdm bar on stderr, the step about to run as its description."""

    def __init__(self, total: int, stream: TextIO | None = None) -> None:
        """A bar of ``total`` steps (settable until the first step), drawn from the first step on."""
        self.total = total
        self.stream = stream or sys.stderr
        self._bar: Any = None

    def step(self, label: str) -> None:
        """Announce the step about to run (the ones before it are done)."""
        if self._bar is None:
            bar_format = "[{bar:24}] {n_fmt}/{total_fmt} {desc}"
            self._bar = tqdm(total=max(self.total, 1), file=self.stream, bar_format=bar_format)
        else:
            self._bar.update(1)
        self._bar.set_description_str(label)

    def note(self, message: str) -> None:
        """A line of information between steps (the bar is redrawn below it)."""
        tqdm.write(message, file=self.stream)

    def finish(self) -> None:
        """Complete the bar."""
        self.step("done")
        self._bar.update(self._bar.total - self._bar.n)
        self._bar.close()


def count_steps(config: BenchConfig) -> int:
    """Progress steps of :func:`run_bench` for ``config``."""
    conversations = (5 + (config.server is not None)) if config.conversations else 0
    return 7 + 2 * len(config.counts) + conversations


# ---------------------------------------------------------------------------------------------
# Measurements


def _proc_status(field_name: str) -> int:
    """A ``/proc/self/status`` memory field (VmRSS, VmHWM) in bytes; 0 when unknown."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1]) * 1024
    return 0


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter of this process to its current RSS (Linux)."""
    try:
        Path("/proc/self/clear_refs").write_text("5", encoding="ascii")
    except OSError:
        return False
    return True


def load_average() -> str:
    """The 1, 5 and 15 minute load averages."""
    with contextlib.suppress(OSError):
        return " ".join(Path("/proc/loadavg").read_text(encoding="ascii").split()[:3])
    return "unknown"


def read_bandwidth(n_threads: int, megabytes: int = 256, rounds: int = 3) -> float:
    """Memory read bandwidth in bytes/s: ``n_threads`` threads summing their slice of a buffer."""
    import numpy as np

    data = np.ones(megabytes * 2**20 // 8, dtype=np.int64)
    slices = np.array_split(data, n_threads)
    best = 0.0
    with ThreadPoolExecutor(n_threads) as pool:
        for _ in range(rounds):
            started = time.perf_counter()
            list(pool.map(np.sum, slices))
            best = max(best, data.nbytes / (time.perf_counter() - started))
    return best


def bare_decode_rate(batch: BatchEngine, context_tokens: list[int], n_tokens: int) -> float:
    """Tokens/s of ``llama_decode`` alone (one token per call, no sampling) after ``context_tokens``.

    The engine's ceiling: the same context, the same sequence length as a worker answer.
    """
    import llama_cpp

    ctx = batch.context
    memory = llama_cpp.llama_get_memory(ctx)
    seq = 1
    one = llama_cpp.llama_batch_init(max(len(context_tokens), 1), 0, 1)
    try:
        llama_cpp.llama_memory_seq_rm(memory, seq, -1, -1)
        _decode(ctx, one, seq, context_tokens, 0)
        started = time.perf_counter()
        for i in range(n_tokens):
            _decode(ctx, one, seq, [context_tokens[-1]], len(context_tokens) + i)
        elapsed = time.perf_counter() - started
    finally:
        llama_cpp.llama_memory_seq_rm(memory, seq, -1, -1)
        llama_cpp.llama_batch_free(one)
    return n_tokens / elapsed


def _decode(ctx: Any, batch: Any, seq: int, tokens: list[int], pos: int) -> None:
    """One llama_decode of ``tokens`` at ``pos`` in sequence ``seq`` (logits of the last)."""
    import llama_cpp

    for i, token in enumerate(tokens):
        batch.token[i] = token
        batch.pos[i] = pos + i
        batch.n_seq_id[i] = 1
        batch.seq_id[i][0] = seq
        batch.logits[i] = i == len(tokens) - 1
    batch.n_tokens = len(tokens)
    if llama_cpp.llama_decode(ctx, batch) != 0:
        raise InferenceError("llama_decode failed in the bare decode loop")


def _prompts(count: int) -> list[str]:
    """``count`` typical prompts (the questions repeat, with a number, beyond eight)."""
    return [
        build_prompt(QUESTIONS[i % len(QUESTIONS)] + (f" ({i})" if i >= len(QUESTIONS) else ""))
        for i in range(count)
    ]


GENERATION_ROUNDS = 3


def worker_engine(config: BenchConfig, *, pool: bool = False) -> BatchEngine:
    """The worker's batched engine as ``config`` sets it up (not loaded until entered); with ``pool``,
    the conversation KV pool of the conversation section."""
    return BatchEngine(
        config.model,
        n_ctx=config.n_ctx,
        n_threads=config.n_threads,
        n_batch=config.n_batch,
        use_mmap=config.use_mmap,
        max_sequences=config.max_sequences,
        pool_slots=CONVERSATIONS if pool else 0,
        pool_bytes=config.pool_mb << 20 if pool else 0,
    )


def ttft(result: GenerationResult) -> float:
    """Seconds from a request's start to its first token (to its end when it made none)."""
    return (result.first_token_at or result.finished_at) - result.started_at


def generation_rate(result: GenerationResult) -> float:
    """Tokens/s after the first token (sampling and bookkeeping included); 0 with fewer than two."""
    if result.first_token_at is None or result.completion_tokens < 2:
        return 0.0
    return (result.completion_tokens - 1) / max(1e-9, result.finished_at - result.first_token_at)


def _timed(action: Callable[[], object]) -> float:
    """Wall seconds ``action`` takes."""
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


# ---------------------------------------------------------------------------------------------
# The two sides


def measure_worker(config: BenchConfig, report: BenchReport, progress: Progress) -> None:
    """Prefix reuse, batched decoding, the bare-decode ceiling and the worker's peak RSS."""
    reset_peak_rss()
    progress.step("worker: loading the model")
    with worker_engine(config, pool=config.conversations) as batch:
        progress.step("worker: evaluating the instruction prefix once")
        report.prefix_tokens = batch.set_prefix(preamble_prompt())
        prompt = _prompts(1)[0]
        report.question_tokens = len(batch.tokenize(prompt)) - report.prefix_tokens
        progress.step("worker: time to first token")
        report.ttft_worker_s = ttft(batch.generate(prompt, max_tokens=1))
        progress.step("worker: generation speed, then bare llama_decode")
        # Interleaved and repeated, best of each: a short sample on a busy CPU is mostly noise.
        worker_rates, bare_rates = [], []
        for _ in range(GENERATION_ROUNDS):
            worker_rates.append(generation_rate(batch.generate(prompt, max_tokens=config.decode_tokens + 1)))
            bare_rates.append(bare_decode_rate(batch, batch.tokenize(prompt), config.decode_tokens))
        report.generation_worker_tps, report.generation_bare_tps = max(worker_rates), max(bare_rates)
        for count in config.counts:
            progress.step(f"worker: {count} questions together")
            requests = [Request(p, max_tokens=config.answer_tokens) for p in _prompts(count)]
            report.together_worker_s[str(count)] = _timed(functools.partial(batch.generate_many, requests))
        report.peak_rss_worker_bytes = _proc_status("VmHWM")
        if config.conversations:
            report.conversation = measure_follow_ups(batch, QUESTIONS[0], config.answer_tokens, progress.step)


def measure_plain(config: BenchConfig, report: BenchReport, progress: Progress) -> None:
    """The plain path: whole prompt every time, questions one after another."""
    progress.step("plain: loading the model")
    with Engine(
        config.model,
        n_ctx=config.n_ctx,
        n_threads=config.n_threads,
        n_batch=config.n_batch,
        use_mmap=config.use_mmap,
    ) as engine:
        prompt = _prompts(1)[0]
        progress.step("plain: time to first token")
        report.ttft_plain_s = ttft(engine.generate(prompt, max_tokens=1, fresh=True))
        # Llama's own longest-prefix match:
        report.ttft_plain_warm_s = ttft(engine.generate(_prompts(2)[1], max_tokens=1))
        for count in config.counts:
            progress.step(f"plain: {count} questions one after another")
            report.together_plain_s[str(count)] = _timed(
                functools.partial(_answer_in_turn, engine, _prompts(count), config.answer_tokens)
            )


def measure_server(config: BenchConfig, binary: Path, figures: ConversationFigures) -> None:
    """The interleaved conversations on llama-server, started with the worker's settings."""
    from inference.bench_server import measure_server_conversations

    settings = _config_dict(config)
    answer = measure_server_conversations(binary, config.model, settings, QUESTIONS[0], config.answer_tokens)
    figures.interleaved.update(answer)


def _answer_in_turn(engine: Engine, prompts: list[str], max_tokens: int) -> None:
    """The plain path: each prompt evaluated whole, one question after the other."""
    for prompt in prompts:
        engine.generate(prompt, max_tokens=max_tokens, fresh=True)


def _ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator, 0 when the denominator is 0."""
    return numerator / denominator if denominator else 0.0


def judge(report: BenchReport) -> None:
    """Compare the figures with the targets of the issue."""
    gen = _ratio(report.generation_worker_tps, report.generation_bare_tps)
    ttft = _ratio(report.ttft_plain_s, report.ttft_worker_s)
    four = _ratio(report.together_plain_s.get("4", 0.0), report.together_worker_s.get("4", 0.0))
    rss_over = report.peak_rss_worker_bytes - report.model_bytes
    report.targets = {
        "worker generation >= 95% of bare decode": {"value": round(gen, 3), "met": gen >= 0.95},
        "time to first token >= 3x shorter": {"value": round(ttft, 2), "met": ttft >= 3.0},
        "4 questions >= 1.5x sooner": {"value": round(four, 2), "met": four >= 1.5} if four else {},
        "peak RSS <= model + 700 MB": {"value": rss_over, "met": rss_over <= 700 * 10**6},
    }
    if report.conversation is not None:
        report.targets.update(conversation_targets(report.conversation))
    report.targets = {name: value for name, value in report.targets.items() if value}


def run_bench(config: BenchConfig, progress: Progress | None = None) -> BenchReport:
    """Measure the worker, then the plain path, on ``config.model``; return every figure."""
    progress = progress or Progress(count_steps(config))
    validate_gguf(config.model)
    report = BenchReport(
        model=str(config.model), model_bytes=config.model.stat().st_size, config=_config_dict(config)
    )
    report.load_average = load_average()
    measure_worker(config, report, progress)
    measure_plain(config, report, progress)
    if config.server is not None and report.conversation is not None:
        progress.step(f"llama-server: {CONVERSATIONS} interleaved conversations")
        measure_server(config, config.server, report.conversation)
    progress.step("memory read bandwidth")
    report.read_bandwidth_bps = read_bandwidth(config.n_threads)
    report.peak_rss_process_bytes = _proc_status("VmHWM")
    report.load_average += f" -> {load_average()}"
    judge(report)
    progress.finish()
    return report


def run_conversation_bench(config: BenchConfig, progress: Progress) -> BenchReport:
    """Only the conversation section (and llama-server's side with ``config.server``)."""
    validate_gguf(config.model)
    report = BenchReport(
        model=str(config.model), model_bytes=config.model.stat().st_size, config=_config_dict(config)
    )
    report.load_average = load_average()
    progress.step("worker: loading the model")
    with worker_engine(config, pool=True) as batch:
        progress.step("worker: evaluating the instruction prefix once")
        report.prefix_tokens = batch.set_prefix(preamble_prompt())
        # The interleaved conversations from the pool only: recomputing them all is the long part.
        conversation = measure_follow_ups(
            batch, QUESTIONS[0], config.answer_tokens, progress.step, ("cached",)
        )
    report.conversation = conversation
    if config.server is not None:
        progress.step(f"llama-server: {CONVERSATIONS} interleaved conversations")
        measure_server(config, config.server, conversation)
    report.load_average += f" -> {load_average()}"
    report.targets = conversation_targets(conversation)
    progress.finish()
    return report


def conversation_steps(config: BenchConfig) -> int:
    """Progress steps of :func:`run_conversation_bench`."""
    return 6 + (config.server is not None)


def format_conversations(report: BenchReport) -> str:
    """The conversation section alone, with its targets."""
    lines = [f"model: {report.model} ({report.model_bytes / 1e9:.3f} GB)"]
    lines.append(f"load average (1/5/15 min, start -> end): {report.load_average}")
    lines.extend(["", *table_lines(report.conversation)] if report.conversation else [])
    lines.extend(["", "targets:"])
    for name, verdict in report.targets.items():
        lines.append(f"  {'met   ' if verdict['met'] else 'MISSED'}  {name}: {verdict['value']}")
    return "\n".join(lines)


def _config_dict(config: BenchConfig) -> dict[str, Any]:
    """The configuration as JSON-able data."""
    data = asdict(config)
    data["model"] = str(config.model)
    data["counts"] = list(config.counts)
    data["server"] = str(config.server) if config.server is not None else None
    return data


# ---------------------------------------------------------------------------------------------
# The table


def _rows(report: BenchReport) -> Iterator[tuple[str, str, str, str]]:
    """(measure, plain, worker, ratio) rows of the table."""
    yield (
        f"time to first token ({report.question_tokens} question tokens "
        f"after {report.prefix_tokens} instruction tokens)",
        f"{report.ttft_plain_s:.2f} s",
        f"{report.ttft_worker_s:.2f} s",
        f"{_ratio(report.ttft_plain_s, report.ttft_worker_s):.1f}x sooner",
    )
    yield (
        "  plain, warm (llama-cpp-python's own prefix match with the previous call)",
        f"{report.ttft_plain_warm_s:.2f} s",
        "",
        "",
    )
    for count, plain in report.together_plain_s.items():
        worker = report.together_worker_s.get(count, 0.0)
        yield (
            f"{count} question(s) arriving together, all answered",
            f"{plain:.1f} s",
            f"{worker:.1f} s",
            f"{_ratio(plain, worker):.2f}x sooner",
        )
    yield (
        "generation: worker vs bare llama_decode loop (tok/s)",
        f"{report.generation_bare_tps:.2f} bare",
        f"{report.generation_worker_tps:.2f}",
        f"{100 * _ratio(report.generation_worker_tps, report.generation_bare_tps):.1f}%",
    )


def format_table(report: BenchReport) -> str:
    """A readable table of the figures, the memory lines and the targets."""
    rows = [("measure", "plain", "worker", "worker vs plain"), *_rows(report)]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [f"model: {report.model} ({report.model_bytes / 1e9:.3f} GB)"]
    lines.append("config: " + ", ".join(f"{k}={v}" for k, v in report.config.items() if k != "model"))
    lines.append(f"load average (1/5/15 min, start -> end): {report.load_average}")
    lines.append("")
    for index, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
        if index == 0:
            lines.append("  ".join("-" * width for width in widths))
    lines.extend(["", *_memory_lines(report)])
    if report.conversation is not None:
        lines.extend(["", *table_lines(report.conversation)])
    lines.extend(["", "targets:"])
    for name, verdict in report.targets.items():
        lines.append(f"  {'met   ' if verdict['met'] else 'MISSED'}  {name}: {verdict['value']}")
    return "\n".join(lines)


def _memory_lines(report: BenchReport) -> list[str]:
    """Peak RSS and the memory-bandwidth bound of generation."""
    bound = _ratio(report.read_bandwidth_bps, report.model_bytes)
    return [
        f"peak RSS of the worker: {report.peak_rss_worker_bytes / 1e9:.2f} GB "
        f"(model file + {(report.peak_rss_worker_bytes - report.model_bytes) / 1e6:.0f} MB); "
        f"whole bench process: {report.peak_rss_process_bytes / 1e9:.2f} GB",
        f"memory bandwidth bound: {report.model_bytes / 1e9:.2f} GB of weights read per token, "
        f"measured read bandwidth {report.read_bandwidth_bps / 1e9:.1f} GB/s -> at most {bound:.1f} tok/s; "
        f"bare decode reaches {100 * _ratio(report.generation_bare_tps, bound):.0f}% of that",
    ]
