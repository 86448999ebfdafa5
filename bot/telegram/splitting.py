"""Split long answers into Telegram-sized messages at paragraph, line, sentence or word boundaries.

Lengths are counted in UTF-16 code units, as Telegram counts them (an emoji is two).
"""

from __future__ import annotations

import re

TELEGRAM_LIMIT = 4096
_SEPARATORS = (
    re.compile(r"\n\s*\n"),  # paragraphs
    re.compile(r"\n"),  # lines
    re.compile(r"(?<=[.!?؟。])\s+"),  # sentences
    re.compile(r"\s+"),  # words
)


def utf16_len(text: str) -> int:
    """Length as Telegram counts it."""
    return len(text.encode("utf-16-le")) // 2


def _cut_point(text: str, limit: int) -> tuple[int, int]:
    """Where to end the first piece and where the rest starts, preferring the coarsest boundary."""
    for separator in _SEPARATORS:
        best = None
        for match in separator.finditer(text):
            if utf16_len(text[: match.start()]) > limit:
                break
            if match.start() > 0:
                best = match
        if best is not None:
            return best.start(), best.end()
    end = limit
    while utf16_len(text[:end]) > limit:
        end -= 1
    return end, end


def split_message(text: str, limit: int = TELEGRAM_LIMIT) -> list[str]:
    """Pieces of at most ``limit`` UTF-16 units, none empty, cut at the most natural boundary."""
    pieces: list[str] = []
    rest = text.strip()
    while utf16_len(rest) > limit:
        end, start = _cut_point(rest, limit)
        pieces.append(rest[:end].rstrip())
        rest = rest[start:].lstrip()
    if rest or not pieces:
        pieces.append(rest)
    return [piece for piece in pieces if piece] or [""]
