"""What the worker needs of whatever answers its questions: the embedded batch engine or a model server."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Protocol

from inference.batch_sequence import Callback, Request


class Backend(Protocol):
    """Takes requests and reports each outcome to its callback; :class:`~inference.batch.BatchEngine` is one.

    ``submit`` is called on the worker's event loop; ``serve`` runs in a thread of its own until
    ``halt`` is set and nothing runs (then ``wake`` is called).
    """

    @property
    def max_sequences(self) -> int:
        """Questions answered at once."""
        ...

    @property
    def n_ctx(self) -> int:
        """Tokens one request's prompt and answer must fit in (history is trimmed to keep within it)."""
        ...

    async def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` as a prompt (``<bos>`` included); never fewer than the model will see."""
        ...

    @property
    def prefix_tokens(self) -> int:
        """Tokens of the instruction prefix kept evaluated (0 when none)."""
        ...

    def set_prefix(self, text: str, state: Path | None = None) -> int:
        """Keep ``text`` evaluated for every request that starts with it (blocking); its token count.

        ``state``: a file to load that KV state from, or to save it to (see inference.prefix_state).
        """
        ...

    def submit(self, request: Request, on_done: Callback) -> object:
        """Queue ``request``; ``on_done`` gets its result or error."""
        ...

    def serve(self, halt: threading.Event) -> None:
        """Do the work until ``halt`` is set and nothing runs (blocking)."""
        ...

    def wake(self) -> None:
        """Wake :meth:`serve` (after setting its halt event)."""
        ...

    def close(self) -> None:
        """Free what the backend holds."""
        ...
