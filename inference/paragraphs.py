"""Finished paragraphs of an answer being written, for DELIVERY=paragraphs (at most MAX_EARLY of them).

A paragraph is finished once a blank line follows it. The first ``MAX_EARLY`` finished paragraphs
are sent as soon as they are complete; the rest of the answer, with the research reminder and the
feedback buttons, is the last message: at most ``MAX_EARLY + 1`` = 3 messages per answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

MAX_EARLY = 2
"""Paragraphs sent before the answer is finished (the last message is the rest)."""

_BREAK = re.compile(r"\n[ \t]*\n\s*")


@dataclass
class Paragraphs:
    """Follows the text of one answer; :meth:`feed` returns the paragraphs finished since the last call."""

    max_early: int = MAX_EARLY
    ends: list[int] = field(default_factory=list)
    """Where each early paragraph ends in the text (characters, the blank line after it included)."""

    def feed(self, text: str) -> list[tuple[int, str]]:
        """Newly finished paragraphs of ``text`` (the answer so far) as ``(index, paragraph)``."""
        found: list[tuple[int, str]] = []
        start = self.ends[-1] if self.ends else 0
        while len(self.ends) < self.max_early:
            match = _BREAK.search(text, start)
            if match is None:
                break
            paragraph = text[start : match.start()].strip()
            if paragraph:  # blank lines at the start only move the start
                found.append((len(self.ends), paragraph))
                self.ends.append(match.end())
            start = match.end()
        return found
