"""The request states of the batched engine: the moves it may make and what a preemption resets."""

from __future__ import annotations

import pytest

from inference.batch_sequence import Job, Request, State


def _job() -> Job:
    return Job(Request("prompt", max_tokens=3, stop=("END",)), lambda _outcome: None)


def test_the_allowed_moves_and_only_those() -> None:
    allowed = {
        (State.WAITING, State.PREFILLING),
        (State.WAITING, State.DONE),
        (State.PREFILLING, State.GENERATING),
        (State.PREFILLING, State.WAITING),
        (State.PREFILLING, State.DONE),
        (State.GENERATING, State.WAITING),
        (State.GENERATING, State.DONE),
    }
    for source in State:
        for target in State:
            job = _job()
            job.state = source
            if (source, target) in allowed:
                job.move(target)
                assert job.state is target
            else:
                with pytest.raises(ValueError, match=f"{source.value} request cannot become {target.value}"):
                    job.move(target)
                assert job.state is source


def test_a_preempted_request_starts_again_from_its_prompt_but_keeps_its_tokens() -> None:
    job = _job()
    job.tokens = [2, 10, 11]
    job.move(State.PREFILLING)
    job.seq_id, job.reserved, job.pos, job.pending = 1, 5, 3, []
    job.move(State.GENERATING)
    job.first_token_at = 1.0
    assert job.add_token(42, b"ab") is None and job.pending == [42]
    job.move(State.WAITING)
    assert (job.seq_id, job.reserved, job.pos, job.pending) == (-1, 0, 0, [])
    assert (job.generated, bytes(job.text), job.first_token_at) == ([], b"", None)
    assert job.tokens == [2, 10, 11]  # not tokenized again


def test_tokens_end_a_request_at_a_stop_string_or_its_budget() -> None:
    job = _job()
    job.tokens = [2]
    assert job.add_token(1, b"one ") is None
    assert job.add_token(2, b"twoEN") is None
    assert job.add_token(3, b"D more") == "stop"  # the stop string spans two tokens
    assert job.result("stop").text == "one two"
    budget = _job()
    assert [budget.add_token(t, b"x") for t in (1, 2, 3)] == [None, None, "length"]
    assert budget.result("length").tokens == (1, 2, 3)
