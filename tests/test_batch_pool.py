"""The conversation KV pool on real llama.cpp (tiny gemma2): greedy equality, budget, eviction, sharing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from inference.batch import PREFIX_SEQ, BatchEngine, Request
from inference.engine import Engine, GenerationResult
from inference.prompt import build_prompt, preamble_prompt

TOKENS = 24
FIRST = "What dose of paracetamol for a child of 12 kg with fever?"
FOLLOW_UPS = ["And if she vomits it?", "For how many days?", "Et si la fièvre continue ?"]
OTHERS = [
    "Signs of severe dehydration in a baby?",
    "How do I clean a deep dirty wound from a machete?",
    "Malaria rapid test is negative but the fever goes on: what next?",
]


@pytest.fixture(scope="module")
def plain(chatty_model_path: Path) -> Iterator[Engine]:
    with Engine(chatty_model_path, n_ctx=2048, n_threads=1) as engine:
        yield engine


def _engine(plain: Engine, *, pool_bytes: int, slots: int = 8, max_sequences: int = 2) -> BatchEngine:
    engine = BatchEngine.sharing(plain, max_sequences=max_sequences, pool_slots=slots, pool_bytes=pool_bytes)
    engine.set_prefix(preamble_prompt())
    return engine


def _conversation(engine: BatchEngine, turns: int) -> list[GenerationResult]:
    """FIRST, then ``turns - 1`` follow-ups, each prompt holding every earlier turn."""
    history: list[tuple[str, str]] = []
    results = []
    for question in [FIRST, *FOLLOW_UPS][:turns]:
        result = engine.generate(build_prompt(question, "en", history=history), max_tokens=TOKENS)
        results.append(result)
        history.append((question, result.text))
    return results


def test_a_cached_follow_up_equals_full_recomputation_token_for_token(plain: Engine) -> None:
    """The pool skips the earlier turns' tokens; the greedy tokens are those of a fresh evaluation."""
    with _engine(plain, pool_bytes=64 << 20) as cached, _engine(plain, pool_bytes=0) as fresh:
        assert cached.pool_budget_bytes and not fresh.pool_budget_bytes
        kept = _conversation(cached, 4)
        fed_cached = cached.stats.tokens
        recomputed = _conversation(fresh, 4)
        fed_fresh = fresh.stats.tokens
        saved = cached.pool_stats.tokens_saved
        assert cached.pool_stats.hits == 3 and fresh.pool_stats.hits == 0
    assert [r.tokens for r in kept] == [r.tokens for r in recomputed]
    assert [r.prompt_tokens for r in kept] == [r.prompt_tokens for r in recomputed]
    assert all(len(set(r.tokens)) > TOKENS // 3 for r in kept)  # not a degenerate repetition
    # Every follow-up evaluated only what followed its cached start.
    assert saved > sum(len(r.tokens) for r in kept[:-1]) and fed_cached == fed_fresh - saved


def test_the_pool_never_exceeds_its_budget_and_eviction_only_costs_time(plain: Engine) -> None:
    """A budget of about two answers: older conversations are evicted, answers stay the same."""
    with _engine(plain, pool_bytes=1 << 30) as probe:
        probe.generate(build_prompt(FIRST), max_tokens=TOKENS)
        one_entry = probe.pool_bytes
    budget = one_entry * 2 + one_entry // 2
    with _engine(plain, pool_bytes=budget) as small, _engine(plain, pool_bytes=0) as fresh:
        histories: dict[str, list[tuple[str, str]]] = {q: [] for q in [FIRST, *OTHERS]}
        answers_small, answers_fresh = [], []
        for round_ in range(2):
            for question, history in histories.items():
                asked = question if round_ == 0 else FOLLOW_UPS[0]
                prompt = build_prompt(asked, "en", history=history)
                result = small.generate(prompt, max_tokens=TOKENS)
                assert small.pool_bytes <= budget
                for seq_id in small.pool_sequences():  # llama.cpp's own count agrees: cells past the prefix
                    own = small.sequence_cells(seq_id) - small.prefix_tokens
                    assert own * small.bytes_per_cell <= budget
                answers_small.append(result.tokens)
                answers_fresh.append(fresh.generate(prompt, max_tokens=TOKENS).tokens)
                history.append((asked, result.text))
        assert small.pool_stats.evicted > 0 and len(small.pool_sequences()) <= 2
    assert answers_small == answers_fresh


def test_idle_cells_give_way_to_active_requests(plain: Engine) -> None:
    """A pool as large as the context: new requests still run (idle entries are evicted for them)."""
    with _engine(plain, pool_bytes=1 << 40, slots=16, max_sequences=3) as engine:
        for question in [FIRST, *OTHERS, *FOLLOW_UPS]:
            engine.generate(build_prompt(question), max_tokens=TOKENS)
        assert len(engine.pool_sequences()) == 7
        room = engine.n_ctx - engine.prefix_tokens
        long = build_prompt("fever " * 400)
        results = engine.generate_many(
            [Request(long, max_tokens=200), Request(long + "?", max_tokens=200), Request(long, max_tokens=8)]
        )
        assert all(r.stop_reason in ("length", "stop") for r in results)
        assert engine.stats.preemptions == 0 and engine.pool_stats.evicted > 0
        idle = sum(engine.sequence_cells(s) - engine.prefix_tokens for s in engine.pool_sequences())
        assert idle <= room and engine.sequence_cells(PREFIX_SEQ) == engine.prefix_tokens
