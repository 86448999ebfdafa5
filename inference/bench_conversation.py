"""The bench's conversation section: follow-ups with and without the KV pool, on one batched engine.

- A follow-up after 0, 500 and 1,500 tokens of history: time to first token with the history's KV
  in the pool (only the new turn is evaluated) and recomputed (the pool emptied first), and the
  pool's bytes. The history's state is made by evaluating it once, as a finished turn leaves it.
- 16 conversations interleaved on 4 sequences: 16 first questions, then their 16 follow-ups, all
  submitted at once; the follow-ups' mean and worst time to first token (queueing included), with
  the pool and recomputed, and the pool's bytes after the first round.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from inference.batch import BatchEngine, Request
from inference.engine import GenerationResult
from inference.prompt import Turn, build_prompt

HISTORY_TOKENS = (0, 500, 1500)
FOLLOW_UP_TARGET = 1.5
"""Issue 12: a follow-up after 1,500 tokens of history within 1.5x a first question's first token."""
SERVER_TARGET = 2.0
"""Issue 12: interleaved follow-ups' first token at least 2x sooner than llama-server's."""
CONVERSATIONS = 16
FOLLOW_UP = "And if the child is allergic to penicillin, what should I give instead, and at what dose?"
_ANSWER = (
    "Give amoxicillin by mouth twice a day for five days, check breathing again after two days, and "
    "refer at once if the child cannot drink, vomits everything, has chest indrawing or convulses. "
)


@dataclass
class ConversationFigures:
    """Seconds and bytes of the conversation section (keys: history tokens, as text)."""

    history_tokens: dict[str, int] = field(default_factory=dict)
    ttft_cached_s: dict[str, float] = field(default_factory=dict)
    ttft_recomputed_s: dict[str, float] = field(default_factory=dict)
    pool_bytes: dict[str, int] = field(default_factory=dict)
    interleaved: dict[str, Any] = field(default_factory=dict)


def _ttft(result: GenerationResult) -> float:
    return (result.first_token_at or result.finished_at) - result.started_at


def history_of(batch: BatchEngine, question: str, tokens: int) -> list[Turn]:
    """Earlier turns adding up to about ``tokens`` tokens (none for 0)."""
    history: list[Turn] = []
    base = len(batch.tokenize(build_prompt(FOLLOW_UP)))
    while tokens and len(batch.tokenize(build_prompt(FOLLOW_UP, "en", history=history))) - base < tokens:
        history.append((f"{question} ({len(history) + 1})", _ANSWER * 2))
    return history


def _warm(batch: BatchEngine, history: list[Turn]) -> None:
    """Leave the state of ``history`` in the pool, as the last turn's answer would."""
    if not history:
        return
    prompt = build_prompt(FOLLOW_UP, "en", history=history)
    earlier = prompt[: prompt.rindex("Question: ")]  # everything before the new question
    batch.generate(earlier, max_tokens=1)


def measure_follow_ups(
    batch: BatchEngine,
    question: str,
    answer_tokens: int,
    step: Callable[[str], None],
    modes: tuple[str, ...] = ("recomputed", "cached"),
) -> ConversationFigures:
    """A follow-up after each of HISTORY_TOKENS, from the pool and recomputed; the interleaved
    conversations in each of ``modes``."""
    figures = ConversationFigures()
    for size in HISTORY_TOKENS:
        step(f"conversation: follow-up after {size} tokens of history")
        history = history_of(batch, question, size)
        prompt = build_prompt(FOLLOW_UP, "en", history=history)
        if len(batch.tokenize(prompt)) + 1 > batch.n_ctx:
            continue  # does not fit this context (N_CTX)
        batch.clear_pool()
        recomputed = batch.generate(prompt, max_tokens=1)
        batch.clear_pool()
        _warm(batch, history)
        figures.pool_bytes[str(size)] = batch.pool_bytes
        cached = batch.generate(prompt, max_tokens=1)
        figures.history_tokens[str(size)] = cached.prompt_tokens - len(
            batch.tokenize(build_prompt(FOLLOW_UP))
        )
        figures.ttft_cached_s[str(size)] = _ttft(cached)
        figures.ttft_recomputed_s[str(size)] = _ttft(recomputed)
    figures.interleaved = _interleaved(batch, question, answer_tokens, step, modes)
    return figures


def _round(batch: BatchEngine, prompts: list[str], max_tokens: int) -> tuple[list[GenerationResult], float]:
    """All ``prompts`` submitted at once; their results and the seconds until the last one."""
    started = time.perf_counter()
    results = batch.generate_many([Request(p, max_tokens=max_tokens) for p in prompts])
    return results, time.perf_counter() - started


def first_questions(question: str) -> list[str]:
    """The first questions of the CONVERSATIONS interleaved conversations (one patient each)."""
    return [f"{question} (patient {index + 1})" for index in range(CONVERSATIONS)]


def follow_up_prompts(firsts: list[str], answers: list[GenerationResult]) -> list[str]:
    """Each conversation's follow-up, its first question and answer as the earlier turn."""
    pairs = zip(firsts, answers, strict=True)
    return [build_prompt(FOLLOW_UP, "en", history=[(q, a.text)]) for q, a in pairs]


def round_waits(results: list[GenerationResult]) -> tuple[float, float]:
    """Mean and worst time to first token of one round, from its first submission (queueing included)."""
    start = min(result.started_at for result in results)
    waits = [(result.first_token_at or result.finished_at) - start for result in results]
    return sum(waits) / len(waits), max(waits)


def _interleaved(
    batch: BatchEngine, question: str, answer_tokens: int, step: Callable[[str], None], modes: tuple[str, ...]
) -> dict[str, Any]:
    """16 conversations on the engine's sequences: first questions, then follow-ups, in each mode."""
    firsts = first_questions(question)
    figures: dict[str, Any] = {"conversations": CONVERSATIONS, "sequences": batch.max_sequences}
    for mode in modes:
        step(f"conversation: {CONVERSATIONS} interleaved conversations ({mode})")
        batch.clear_pool()
        hits = batch.pool_stats.hits
        answers, _ = _round(batch, [build_prompt(q) for q in firsts], answer_tokens)
        figures["pool_bytes_after_first_round"] = batch.pool_bytes
        if mode == "recomputed":
            batch.clear_pool()
        results, seconds = _round(batch, follow_up_prompts(firsts, answers), answer_tokens)
        figures[f"{mode}_ttft_mean_s"], figures[f"{mode}_ttft_max_s"] = round_waits(results)
        figures[f"{mode}_round_s"] = seconds
        figures[f"{mode}_pool_hits"] = batch.pool_stats.hits - hits
    return figures


def table_lines(figures: ConversationFigures) -> list[str]:
    """The section as lines of text."""
    lines = ["conversations (KV pool vs recomputing the history):"]
    for size, cached in figures.ttft_cached_s.items():
        recomputed = figures.ttft_recomputed_s[size]
        lines.append(
            f"  follow-up after {figures.history_tokens[size]} history tokens: first token "
            f"{cached:.2f} s from the pool, {recomputed:.2f} s recomputed "
            f"({recomputed / max(cached, 1e-9):.1f}x); pool {figures.pool_bytes[size] / 1e6:.1f} MB"
        )
    inter = figures.interleaved
    if "recomputed_ttft_mean_s" in inter:
        pooled = f"{inter['cached_ttft_mean_s']:.2f} s (max {inter['cached_ttft_max_s']:.2f})"
        again = f"{inter['recomputed_ttft_mean_s']:.2f} s (max {inter['recomputed_ttft_max_s']:.2f})"
        lines.append(
            f"  {inter['conversations']} conversations on {inter['sequences']} sequences, follow-ups: "
            f"first token mean {pooled} from the pool vs {again} recomputed; all answered in "
            f"{inter['cached_round_s']:.1f} s vs {inter['recomputed_round_s']:.1f} s; "
            f"pool {inter['pool_bytes_after_first_round'] / 1e6:.1f} MB, {inter['cached_pool_hits']} hits"
        )
    elif "cached_ttft_mean_s" in inter:
        lines.append(
            f"  {inter['conversations']} conversations on {inter['sequences']} sequences, follow-ups: "
            f"first token mean {inter['cached_ttft_mean_s']:.2f} s (max {inter['cached_ttft_max_s']:.2f}) "
            f"from the pool; all answered in {inter['cached_round_s']:.1f} s"
        )
    if "server_ttft_mean_s" in inter:
        lines.append(
            f"  llama-server ({inter['server_options']}, its default prompt cache), same conversations: "
            f"first token mean {inter['server_ttft_mean_s']:.2f} s (max {inter['server_ttft_max_s']:.2f}); "
            f"all answered in {inter['server_round_s']:.1f} s; "
            f"peak RSS {inter['server_peak_rss_bytes'] / 1e9:.2f} GB"
        )
    return lines


def conversation_targets(figures: ConversationFigures) -> dict[str, dict[str, Any]]:
    """Issue 12's targets, where the figures exist: follow-up after 1,500 tokens, against llama-server."""
    targets: dict[str, dict[str, Any]] = {}
    first, long = figures.ttft_cached_s.get("0"), figures.ttft_cached_s.get("1500")
    if first and long:
        ratio = long / first
        name = f"follow-up after 1500 history tokens <= {FOLLOW_UP_TARGET}x a first question (first token)"
        targets[name] = {"value": round(ratio, 2), "met": ratio <= FOLLOW_UP_TARGET}
    inter = figures.interleaved
    if inter.get("server_ttft_mean_s") and inter.get("cached_ttft_mean_s"):
        ratio = inter["server_ttft_mean_s"] / inter["cached_ttft_mean_s"]
        name = f"{CONVERSATIONS} interleaved follow-ups >= {SERVER_TARGET}x sooner than llama-server (mean)"
        targets[name] = {"value": round(ratio, 2), "met": ratio >= SERVER_TARGET}
    return targets
