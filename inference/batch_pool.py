"""The conversation KV pool: finished sequences kept idle in the unified KV cache, under a byte budget.

When a request finishes, its KV cells (prompt and answer) are re-tagged to an idle *pool* sequence
instead of being freed (``llama_memory_seq_cp`` in a unified cache tags cells, it copies nothing).
A later prompt that starts with the same tokens (a follow-up holds the earlier turn verbatim) takes
the longest matching entry over and evaluates only what follows. Entries are evicted oldest first
when the pool is over its budget, when a sequence id is needed, or when active requests need the
cells; eviction only costs time (the next follow-up recomputes).

Bytes are counted per KV cell: K and V of every layer (``bytes_per_cell``); an entry owns the cells
past the instruction prefix it shares with sequence 0.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

MIN_REUSE = 32
"""Tokens past the prefix that make any entry worth taking over (see :meth:`PoolEntry.worth_taking`)."""


@dataclass(frozen=True)
class PoolEntry:
    """One idle sequence: the tokens whose KV it holds and how many of its cells are the prefix's."""

    seq_id: int
    tokens: tuple[int, ...]
    prefix_cells: int

    @property
    def own_cells(self) -> int:
        """Cells only this entry holds (past the shared instruction prefix)."""
        return len(self.tokens) - self.prefix_cells

    def worth_taking(self, shared: int) -> bool:
        """Whether a prompt sharing its first ``shared`` tokens should take this entry over.

        Only when it shares at least half of the entry's own cells (a follow-up shares all of
        them, or nearly: an answer retokenized may differ near its end) or ``MIN_REUSE`` tokens: a
        few common tokens after the prefix ("Question:") must not cost a whole conversation its
        cached state.
        """
        reused = shared - self.prefix_cells
        return reused > 0 and (2 * reused >= self.own_cells or reused >= MIN_REUSE)


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the longest common prefix of two token lists."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


@dataclass
class PoolStats:
    """Hits, tokens not evaluated again thanks to the pool, entries kept and evicted."""

    hits: int = 0
    tokens_saved: int = 0
    kept: int = 0
    evicted: int = 0


class KvPool:
    """Idle sequences ``first_id`` .. ``first_id + slots - 1``, least recently used first."""

    def __init__(self, first_id: int, slots: int, budget_bytes: int, bytes_per_cell: int) -> None:
        self.budget_bytes = max(0, budget_bytes)
        self.bytes_per_cell = max(1, bytes_per_cell)
        self.entries: OrderedDict[int, PoolEntry] = OrderedDict()
        self._free = list(range(first_id + slots - 1, first_id - 1, -1))
        self.stats = PoolStats()

    @property
    def enabled(self) -> bool:
        """Whether anything can be kept (a slot and a budget of at least one cell)."""
        return bool(self._free or self.entries) and self.budget_bytes >= self.bytes_per_cell

    @property
    def cells(self) -> int:
        """KV cells the idle entries hold (beyond the instruction prefix)."""
        return sum(entry.own_cells for entry in self.entries.values())

    @property
    def bytes(self) -> int:
        """Bytes of KV the idle entries hold."""
        return self.cells * self.bytes_per_cell

    @property
    def budget_cells(self) -> int:
        """How many cells the budget allows."""
        return self.budget_bytes // self.bytes_per_cell

    def best(self, tokens: Sequence[int]) -> tuple[PoolEntry | None, int]:
        """The entry sharing the longest start with ``tokens`` and that length (None, 0: no entry)."""
        found, length = None, 0
        for entry in self.entries.values():
            shared = common_prefix(tokens, entry.tokens)
            if shared > length:
                found, length = entry, shared
        return found, length

    def take(self, entry: PoolEntry) -> None:
        """Remove ``entry`` (its cells now belong to a request); its sequence id is free again."""
        del self.entries[entry.seq_id]
        self._free.append(entry.seq_id)

    def oldest(self, keep: PoolEntry | None = None) -> PoolEntry | None:
        """The least recently kept entry other than ``keep``."""
        return next((e for e in self.entries.values() if e is not keep), None)

    def slot(self) -> int | None:
        """A free idle sequence id (None when every slot holds an entry)."""
        return self._free.pop() if self._free else None

    def add(self, seq_id: int, tokens: Sequence[int], prefix_cells: int) -> PoolEntry:
        """Record that idle sequence ``seq_id`` now holds the KV of ``tokens``."""
        entry = PoolEntry(seq_id, tuple(tokens), prefix_cells)
        self.entries[seq_id] = entry
        self.stats.kept += 1
        return entry

    def fits(self, own_cells: int) -> bool:
        """Whether an entry owning ``own_cells`` could ever be kept under the budget."""
        return 0 < own_cells <= self.budget_cells
