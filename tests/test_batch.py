"""The batched engine on real llama.cpp with the tiny gemma2 file: equality, limits, recovery."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from inference.batch import PREFIX_SEQ, BatchEngine, Request, State
from inference.engine import Engine, GenerationResult
from inference.errors import ContextFullError, DecodeError, InferenceError, PromptTooLongError
from inference.prompt import build_prompt, preamble_prompt

QUESTIONS = [
    "What dose of paracetamol for a child of 12 kg with fever?",
    "Signs of severe dehydration in a baby?",
    "Combien de SRO pour un enfant avec diarrhée ?",
    "How do I clean a deep dirty wound from a machete?",
    "Malaria rapid test is negative but the fever goes on: what next?",
]
TOKENS = 24


@pytest.fixture(scope="module")
def plain(tiny_model_path: Path) -> Iterator[Engine]:
    """The plain single-sequence engine (llama-cpp-python's Llama) on the tiny model."""
    with Engine(tiny_model_path, n_ctx=2048, n_threads=1) as engine:
        yield engine


@pytest.fixture
def batch(plain: Engine) -> Iterator[BatchEngine]:
    """A batched context sharing the plain engine's weights, with the instruction prefix set."""
    with BatchEngine.sharing(plain, max_sequences=3) as engine:
        engine.set_prefix(preamble_prompt())
        yield engine


@pytest.fixture(scope="module")
def reference(plain: Engine) -> list[tuple[int, ...]]:
    """Greedy tokens of each question on the plain path, whole prompt evaluated each time."""
    return [plain.generate(build_prompt(q), max_tokens=TOKENS, fresh=True).tokens for q in QUESTIONS]


def test_unbatched_without_prefix_reuse_equals_the_plain_path(
    tiny_model_path: Path, reference: list[tuple[int, ...]]
) -> None:
    with BatchEngine(tiny_model_path, n_ctx=2048, n_threads=1, max_sequences=1) as alone:
        assert alone.prefix_tokens == 0
        tokens = [alone.generate(build_prompt(q), max_tokens=TOKENS).tokens for q in QUESTIONS]
    assert tokens == reference
    assert all(len(t) == TOKENS for t in tokens)


def test_prefix_reuse_gives_the_same_tokens_and_skips_the_prefix(
    batch: BatchEngine, reference: list[tuple[int, ...]]
) -> None:
    before = batch.stats.tokens
    results = [batch.generate(build_prompt(q), max_tokens=TOKENS) for q in QUESTIONS]
    assert [r.tokens for r in results] == reference
    fed = batch.stats.tokens - before
    prompt_tokens = sum(r.prompt_tokens for r in results)
    assert batch.prefix_tokens > 200
    # only each question's own tokens (and the generated ones) were decoded, never the prefix again
    assert fed == prompt_tokens - len(QUESTIONS) * batch.prefix_tokens + len(QUESTIONS) * (TOKENS - 1)


def test_batched_sequences_with_continuous_admission_give_the_same_tokens(
    batch: BatchEngine, reference: list[tuple[int, ...]]
) -> None:
    # five questions, three sequences: two join while the others are generating; budgets differ so
    # sequences finish (and free their cells) at different steps
    budgets = [TOKENS, 9, 17, TOKENS, 5]
    requests = [Request(build_prompt(q), max_tokens=n) for q, n in zip(QUESTIONS, budgets, strict=True)]
    decodes_before = batch.stats.decodes
    results = batch.generate_many(requests)
    assert [r.tokens for r in results] == [ref[:n] for ref, n in zip(reference, budgets, strict=True)]
    assert batch.stats.decodes - decodes_before < sum(budgets)  # steps were shared
    assert batch.active == 0
    assert batch.reserved_cells == 0


def test_a_question_submitted_while_others_generate_joins_the_next_step(
    batch: BatchEngine, reference: list[tuple[int, ...]]
) -> None:
    results: dict[str, object] = {}
    batch.submit(Request(build_prompt(QUESTIONS[0]), max_tokens=TOKENS), lambda r: results.update(a=r))
    for _ in range(4):
        batch.step()
    assert batch.active == 1
    batch.submit(Request(build_prompt(QUESTIONS[1]), max_tokens=TOKENS), lambda r: results.update(b=r))
    batch.step()
    assert batch.active == 2  # admitted at once, not after the first finished
    batch.run_until_idle()
    assert [getattr(results[k], "tokens", None) for k in "ab"] == reference[:2]


def test_cancellation_frees_the_sequence_and_its_kv_cells(
    batch: BatchEngine, reference: list[tuple[int, ...]]
) -> None:
    cancel = threading.Event()
    outcome: list[object] = []
    job = batch.submit(
        Request(build_prompt(QUESTIONS[2]), max_tokens=200, should_stop=cancel.is_set), outcome.append
    )
    for _ in range(5):
        batch.step()
    assert batch.active == 1 and job.state is State.GENERATING
    seq_id = job.seq_id  # the sequence id in use
    assert batch.sequence_cells(seq_id) > batch.prefix_tokens
    assert batch.reserved_cells > 200
    cancel.set()
    batch.step()
    assert outcome
    result = outcome[0]
    assert getattr(result, "stop_reason", None) == "cancelled"
    assert 0 < getattr(result, "completion_tokens", 0) < 200
    assert batch.active == 0
    assert batch.reserved_cells == 0
    assert batch.sequence_cells(seq_id) == 0  # its cells are free
    assert batch.sequence_cells(PREFIX_SEQ) == batch.prefix_tokens  # the shared prefix is kept
    assert batch.generate(build_prompt(QUESTIONS[0]), max_tokens=TOKENS).tokens == reference[0]


def test_cancelled_before_start_evaluates_nothing(batch: BatchEngine) -> None:
    before = batch.stats.tokens
    result = batch.generate(build_prompt(QUESTIONS[0]), max_tokens=10, should_stop=lambda: True)
    assert result.stop_reason == "cancelled"
    assert result.completion_tokens == 0
    assert batch.stats.tokens == before


def test_stop_strings_and_per_sequence_budgets(batch: BatchEngine) -> None:
    full = batch.generate(build_prompt(QUESTIONS[3]), max_tokens=TOKENS)
    stop = full.text[5:8]
    assert stop and stop in full.text
    cut, short = batch.generate_many(
        [
            Request(build_prompt(QUESTIONS[3]), max_tokens=TOKENS, stop=(stop,)),
            Request(build_prompt(QUESTIONS[3]), max_tokens=3),
        ]
    )
    assert cut.stop_reason == "stop"
    assert cut.text == full.text[: full.text.index(stop)]
    assert short.stop_reason == "length"
    assert short.tokens == full.tokens[:3]


def test_sampling_settings_are_per_sequence(batch: BatchEngine) -> None:
    prompt = build_prompt(QUESTIONS[1])
    greedy, hot_a, hot_b, hot_c = batch.generate_many(
        [
            Request(prompt, max_tokens=TOKENS),
            Request(prompt, max_tokens=TOKENS, temperature=1.5, seed=1),
            Request(prompt, max_tokens=TOKENS, temperature=1.5, seed=1),
            Request(prompt, max_tokens=TOKENS, temperature=1.5, seed=2),
        ]
    )
    assert greedy.tokens == batch.generate(prompt, max_tokens=TOKENS).tokens
    assert hot_a.tokens == hot_b.tokens  # same seed, same draw
    assert hot_a.tokens != greedy.tokens or hot_c.tokens != greedy.tokens


def test_a_prompt_longer_than_the_context_is_refused_and_others_go_on(
    batch: BatchEngine, reference: list[tuple[int, ...]]
) -> None:
    outcomes: dict[str, object] = {}
    batch.submit(Request(build_prompt("fever " * 3000), max_tokens=TOKENS), lambda r: outcomes.update(x=r))
    batch.submit(Request(build_prompt(QUESTIONS[0]), max_tokens=TOKENS), lambda r: outcomes.update(y=r))
    batch.run_until_idle()
    refused = outcomes["x"]
    assert isinstance(refused, PromptTooLongError)
    assert refused.prompt_tokens > batch.n_ctx
    assert getattr(outcomes["y"], "tokens", None) == reference[0]
    with pytest.raises(PromptTooLongError):
        batch.generate(build_prompt("fever " * 3000), max_tokens=TOKENS)


def test_closed_engine_refuses_work(plain: Engine) -> None:
    engine = BatchEngine.sharing(plain, max_sequences=1)
    engine.close()
    engine.close()  # idempotent
    engine.submit(Request("hi", max_tokens=2), lambda _r: None)
    with pytest.raises(InferenceError, match="closed"):
        engine.step()


def test_closing_the_plain_engine_first_keeps_the_shared_weights_until_the_batch_closes(
    tiny_model_path: Path,
) -> None:
    engine = Engine(tiny_model_path, n_ctx=2048, n_threads=1)
    prompt = build_prompt(QUESTIONS[1])
    expected = engine.generate(prompt, max_tokens=8, fresh=True).tokens
    batch = BatchEngine.sharing(engine, max_sequences=1)
    engine.close()  # the order of a test that fails, or a shutdown: the owner goes first
    with pytest.raises(InferenceError, match="closed"):
        engine.generate(prompt, max_tokens=8)
    assert engine.model_loaded  # the batched context still uses the weights
    assert batch.generate(prompt, max_tokens=8).tokens == expected
    batch.close()
    assert not engine.model_loaded  # freed with the last context on them
    with pytest.raises(InferenceError, match="closed"):
        BatchEngine.sharing(engine)


# -- long prompts, the context limit, a full KV cache, decode failures ----------------------------

SMALL_BATCH = 32
LONG = "The child has had fever, cough and fast breathing for three days and refuses to drink. " * 12


@pytest.fixture
def small(plain: Engine) -> Iterator[BatchEngine]:
    """A batched context whose batches hold only 32 tokens: any real question tail is longer."""
    with BatchEngine.sharing(plain, max_sequences=3, n_batch=SMALL_BATCH) as engine:
        engine.set_prefix(preamble_prompt())
        yield engine


def _tail(engine: BatchEngine, prompt: str) -> int:
    """Tokens of ``prompt`` after the shared instruction prefix."""
    return len(engine.tokenize(prompt)) - engine.prefix_tokens


def test_a_prompt_tail_longer_than_n_batch_is_prefilled_over_several_steps(
    small: BatchEngine, plain: Engine
) -> None:
    prompt = build_prompt(LONG)
    tail = _tail(small, prompt)
    assert tail > 8 * SMALL_BATCH
    expected = plain.generate(prompt, max_tokens=TOKENS, fresh=True).tokens
    before = small.stats.decodes
    outcome: list[object] = []
    job = small.submit(Request(prompt, max_tokens=TOKENS), outcome.append)
    small.step()
    assert small.active == 1 and job.state is State.PREFILLING
    seq_id = job.seq_id  # the sequence being prefilled
    held = [small.sequence_cells(seq_id)]
    while not outcome:
        small.step()
        held.append(small.sequence_cells(seq_id))
    # each step wrote the KV of one more chunk at the next positions, none skipped
    prefill = [small.prefix_tokens + min(tail, SMALL_BATCH * (i + 1)) for i in range(-(-tail // SMALL_BATCH))]
    assert held[: len(prefill)] == prefill
    result = outcome[0]
    assert isinstance(result, GenerationResult)
    assert result.tokens == expected  # and the answer is the one of the plain path
    prefill_steps = -(-tail // SMALL_BATCH)
    assert small.stats.decodes - before == prefill_steps + TOKENS - 1  # a decode for every chunk
    assert small.stats.retries == small.stats.failures == 0
    print(f"\nlong tail: {tail} tokens, n_batch {SMALL_BATCH}, {prefill_steps} prefill decodes")


def test_a_request_goes_waiting_prefilling_generating_done(small: BatchEngine) -> None:
    prompt = build_prompt(LONG)
    prefill_steps = -(-_tail(small, prompt) // SMALL_BATCH)
    reported: list[State] = []
    job = small.submit(Request(prompt, max_tokens=4), lambda _outcome: reported.append(job.state))
    assert job.state is State.WAITING and job.seq_id == -1  # no sequence id, no KV cell yet
    states = []
    while small.busy():
        small.step()
        states.append(job.state)
    # the last prompt chunk's step samples the first token; three more steps make the budget of four
    expected = [State.PREFILLING] * (prefill_steps - 1) + [State.GENERATING] * 3 + [State.DONE]
    assert states == expected
    assert reported == [State.DONE]  # the outcome goes out once the request is done
    assert small.active == 0


def test_long_and_short_prompts_admitted_together_are_answered_as_alone(
    small: BatchEngine, plain: Engine
) -> None:
    prompts = [
        build_prompt(LONG),
        build_prompt(QUESTIONS[0]),
        build_prompt("Since yesterday: " + LONG),
        build_prompt(QUESTIONS[1]),
        build_prompt(LONG + " What now?"),
    ]
    expected = [plain.generate(p, max_tokens=TOKENS, fresh=True).tokens for p in prompts]
    results = small.generate_many([Request(p, max_tokens=TOKENS) for p in prompts])
    assert [r.tokens for r in results] == expected
    # the short question, admitted with two long ones, got its first token before either long one
    assert results[1].first_token_at is not None
    assert all(results[1].first_token_at < (r.first_token_at or 0) for r in (results[0], results[2]))
    assert small.active == 0
    assert all(small.sequence_cells(seq_id) == 0 for seq_id in range(1, small.max_sequences + 1))


def test_a_prompt_at_the_context_limit_is_answered_and_one_token_more_is_refused(
    small: BatchEngine, reference: list[tuple[int, ...]]
) -> None:
    prompt = build_prompt("fever " * 1500)
    prompt_tokens = len(small.tokenize(prompt))
    budget = small.n_ctx - prompt_tokens  # prompt + answer fill the context exactly
    assert 0 < budget < 300
    result = small.generate(prompt, max_tokens=budget)
    assert result.prompt_tokens == prompt_tokens
    assert result.completion_tokens == budget or result.stop_reason == "stop"
    with pytest.raises(PromptTooLongError) as refused:
        small.generate(prompt, max_tokens=budget + 1)
    assert refused.value.limit == prompt_tokens - 1
    print(f"\ncontext limit: {prompt_tokens} prompt + {result.completion_tokens} answer of {small.n_ctx}")
    assert small.generate(build_prompt(QUESTIONS[0]), max_tokens=TOKENS).tokens == reference[0]


def test_a_full_kv_cache_is_retried_smaller_and_the_newest_sequence_waits(tiny_model_path: Path) -> None:
    # three sequences admitted on their prompts alone; their answers cannot all fit the 1024 cells
    budget = 260
    prompts = [build_prompt(q) for q in QUESTIONS[:3]]
    with BatchEngine(
        tiny_model_path, n_ctx=1024, n_threads=1, max_sequences=3, n_batch=64, reserve_answer=False
    ) as engine:
        engine.set_prefix(preamble_prompt())
        alone = [engine.generate(p, max_tokens=budget).tokens for p in prompts]
        assert engine.stats.retries == engine.stats.preemptions == 0
        need = sum(_tail(engine, p) + len(t) for p, t in zip(prompts, alone, strict=True))
        assert need > engine.n_ctx - engine.prefix_tokens  # they really do not fit together
        results = engine.generate_many([Request(p, max_tokens=budget) for p in prompts])
        # Every one completed its whole answer. (Not token-equal to the solo runs: with random weights,
        # near-tied logits flip when the batch shape changes the floating-point order, e.g. on an AVX2
        # build, and preemption re-prefills in a different batch.)
        assert [len(r.tokens) for r in results] == [len(t) for t in alone]
        assert engine.stats.retries > 0  # llama_decode said "no KV room" and got a smaller batch
        assert engine.stats.preemptions >= 1  # the newest gave its cells up and ran later
        assert engine.stats.failures == 0
        assert engine.active == 0
        assert engine.sequence_cells(PREFIX_SEQ) == engine.prefix_tokens
        assert len(engine.generate(prompts[0], max_tokens=budget).tokens) == len(alone[0])  # still serving
        print(f"\nKV full: {engine.stats.retries} retries, {engine.stats.preemptions} preemptions")


def test_a_decode_failure_frees_every_sequence_in_the_batch_and_the_engine_goes_on(
    small: BatchEngine, reference: list[tuple[int, ...]]
) -> None:
    outcomes: dict[str, object] = {}
    short = small.submit(
        Request(build_prompt(QUESTIONS[0]), max_tokens=TOKENS), lambda r: outcomes.update(a=r)
    )
    small.step()  # its tail fits one batch: it generates from now on
    long = small.submit(Request(build_prompt(LONG), max_tokens=TOKENS), lambda r: outcomes.update(b=r))
    for _ in range(3):
        small.step()  # the long tail is partly prefilled
    assert (short.state, long.state) == (State.GENERATING, State.PREFILLING)
    ids = [short.seq_id, long.seq_id]  # the sequence ids in use
    assert small.active == 2
    assert small.sequence_cells(long.seq_id) > small.prefix_tokens + SMALL_BATCH
    long.pending[0] = 10**6  # fault injection (white-box): llama.cpp refuses the batch (invalid token)
    small.step()
    assert isinstance(outcomes.get("a"), DecodeError)
    assert isinstance(outcomes.get("b"), DecodeError)
    assert getattr(outcomes["b"], "status", None) == -1
    assert small.active == 0
    assert all(small.sequence_cells(seq_id) == 0 for seq_id in ids)  # no position without KV left
    assert small.sequence_cells(PREFIX_SEQ) == small.prefix_tokens
    assert small.stats.failures == 1
    assert small.generate(build_prompt(QUESTIONS[0]), max_tokens=TOKENS).tokens == reference[0]


def test_a_sequence_alone_in_a_full_cache_fails_cleanly_and_the_engine_goes_on(tiny_model_path: Path) -> None:
    import llama_cpp

    with BatchEngine(tiny_model_path, n_ctx=1024, n_threads=1, max_sequences=2, n_batch=64) as engine:
        engine.set_prefix(preamble_prompt())
        prompt = build_prompt(QUESTIONS[4])
        expected = engine.generate(prompt, max_tokens=TOKENS).tokens
        # fault injection: cells filled behind the engine's back (sequence 2 is free: ids go 1 first)
        free = engine.n_ctx - engine.prefix_tokens
        filler = engine.tokenize("fever " * 2000)[: free - _tail(engine, prompt) // 2]
        one = llama_cpp.llama_batch_init(engine.n_batch, 0, 1)
        try:
            for start in range(0, len(filler), engine.n_batch):
                chunk = filler[start : start + engine.n_batch]
                for i, token in enumerate(chunk):
                    one.token[i], one.pos[i], one.n_seq_id[i], one.logits[i] = token, start + i, 1, False
                    one.seq_id[i][0] = 2
                one.n_tokens = len(chunk)
                assert llama_cpp.llama_decode(engine.context, one) == 0
        finally:
            llama_cpp.llama_batch_free(one)
        outcome: list[object] = []
        engine.submit(Request(prompt, max_tokens=TOKENS), outcome.append)
        engine.run_until_idle()
        assert isinstance(outcome[0], ContextFullError)
        assert engine.stats.retries > 0  # smaller batches were tried first
        assert engine.sequence_cells(1) == 0  # its partial prompt is gone
        assert engine.active == 0
        llama_cpp.llama_memory_seq_rm(llama_cpp.llama_get_memory(engine.context), 2, -1, -1)
        assert engine.generate(prompt, max_tokens=TOKENS).tokens == expected  # room again: answered
