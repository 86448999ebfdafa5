"""One request in the batched engine: its state (waiting, prefilling, generating, done) and progress.

The states follow the slots of llama.cpp's server (``tools/server``):

- ``WAITING``: submitted (or preempted and queued again); holds no sequence id and no KV cell.
- ``PREFILLING``: admitted; its prompt tail is being evaluated, over as many steps as it needs.
- ``GENERATING``: its prompt is in the KV cache; each step feeds back the token it sampled last.
- ``DONE``: its outcome was reported; it holds nothing.

Every change of state goes through :meth:`Job.move`, which refuses a move the table below does not
allow and resets what the new state must not carry over (a preempted request starts again from its
prompt).
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from inference.engine import GenerationResult, StopReason
from inference.errors import InferenceError


@dataclass(frozen=True)
class Request:
    """One generation: the prompt and its own sampling, stop strings, budget and cancel callback."""

    prompt: str
    max_tokens: int
    temperature: float = 0.0
    seed: int = 0
    stop: tuple[str, ...] = ()
    should_stop: Callable[[], bool] | None = None
    reuse_prefix: bool = True
    on_text: Callable[[str], None] | None = None
    """Called (on the engine's thread) with the text so far after each token that holds a line break."""


Outcome = GenerationResult | InferenceError
Callback = Callable[[Outcome], None]


class State(enum.Enum):
    """Where a request is in the engine."""

    WAITING = "waiting"
    PREFILLING = "prefilling"
    GENERATING = "generating"
    DONE = "done"


_MOVES: dict[State, frozenset[State]] = {
    State.WAITING: frozenset({State.PREFILLING, State.DONE}),  # admitted; or refused, cancelled, closed
    State.PREFILLING: frozenset({State.GENERATING, State.WAITING, State.DONE}),  # first token; preempted
    State.GENERATING: frozenset({State.WAITING, State.DONE}),  # preempted; finished or failed
    State.DONE: frozenset(),
}


@dataclass
class Job:
    """A request and its progress: KV sequence id, what to feed next, what it produced."""

    request: Request
    on_done: Callback
    state: State = State.WAITING
    tokens: list[int] | None = None
    """The prompt's tokens, once tokenized (kept across a preemption)."""
    seq_id: int = -1
    sampler: Any = None
    reserved: int = 0
    """KV cells promised at admission (see ``BatchEngine.reserved_cells``)."""
    admitted: int = 0
    """Admission order: the newest is preempted first."""
    pos: int = 0
    pending: list[int] = field(default_factory=list)
    """Tokens to feed: the rest of the prompt tail while prefilling, then the last sampled token."""
    prefix_cells: int = 0
    """KV cells it shares with the instruction prefix (sequence 0)."""
    started_at: float = 0.0
    generated: list[int] = field(default_factory=list)
    text: bytearray = field(default_factory=bytearray)
    first_token_at: float | None = None

    def move(self, state: State) -> None:
        """Change state; ValueError for a move the engine must never make."""
        if state not in _MOVES[self.state]:
            raise ValueError(f"a {self.state.value} request cannot become {state.value}")
        self.state = state
        if state is State.WAITING:  # preempted: it starts again from its prompt
            self.seq_id, self.sampler, self.reserved, self.pos, self.prefix_cells = -1, None, 0, 0, 0
            self.pending, self.generated, self.text, self.first_token_at = [], [], bytearray(), None

    def kv_tokens(self) -> list[int]:
        """The tokens whose KV the sequence holds: the prompt, then the generated tokens fed back."""
        return [*(self.tokens or ()), *self.generated][: self.pos]

    def cancelled(self) -> bool:
        """Whether the request's cancel callback says stop."""
        return self.request.should_stop is not None and self.request.should_stop()

    def add_token(self, token: int, piece: bytes) -> StopReason | None:
        """Record a generated (non end-of-generation) token; the stop reason once done, else None."""
        self.generated.append(token)
        self.text += piece
        if self.request.stop and self._cut_at_stop():
            return "stop"
        if self.request.on_text is not None and b"\n" in piece:
            self.request.on_text(bytes(self.text).decode("utf-8", errors="replace"))
        if len(self.generated) >= self.request.max_tokens:
            return "length"
        if self.cancelled():
            return "cancelled"
        self.pending = [token]
        return None

    def _cut_at_stop(self) -> bool:
        """Cut the text at the first stop string it now contains; whether it did."""
        text = self.text.decode("utf-8", errors="ignore")
        hits = [text.find(stop) for stop in self.request.stop if stop and stop in text]
        if not hits:
            return False
        self.text = bytearray(text[: min(hits)].encode("utf-8"))
        return True

    def result(self, reason: StopReason) -> GenerationResult:
        """The outcome of a request that ran to ``reason``."""
        return GenerationResult(
            bytes(self.text).decode("utf-8", errors="replace"),
            len(self.tokens or ()),
            len(self.generated),
            reason,
            self.started_at,
            self.first_token_at,
            time.time(),
            tuple(self.generated),
        )
