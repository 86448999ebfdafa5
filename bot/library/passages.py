"""Split a document's blocks into passages along headings and paragraphs.

A heading closes the passage before it and becomes part of the section path (``Diarrhoea ›
Some dehydration``). Paragraphs of one section are gathered while they fit ``MAX_PASSAGE_TOKENS``;
a longer paragraph is cut at sentence ends (a sentence longer still, at word boundaries). A PDF
passage does not cross pages, so its page is exact.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bot.library.blocks import Block
from bot.library.words import estimate_tokens

MAX_PASSAGE_TOKENS = 120  # three passages fit the default prompt budget (LIBRARY_MAX_TOKENS 400)
SECTION_SEPARATOR = " › "
_SENTENCE_END = re.compile(r"(?<=[.!?:;])\s+")


@dataclass(frozen=True)
class PassageText:
    """One passage before it is stored: section path, page and text."""

    section: str
    page: int | None
    text: str

    @property
    def tokens(self) -> int:
        """Its estimated size in model tokens."""
        return estimate_tokens(self.text)


def split_passages(
    blocks: list[Block], title: str | None = None, max_tokens: int = MAX_PASSAGE_TOKENS
) -> list[PassageText]:
    """The passages of a document, in reading order; a level-1 heading equal to ``title`` is no section."""
    passages: list[PassageText] = []
    path: list[tuple[int, str]] = []
    current: list[str] = []
    page: int | None = None

    def close() -> None:
        if current:
            section = SECTION_SEPARATOR.join(title for _, title in path)
            passages.append(PassageText(section[:500], page, "\n".join(current)))
            current.clear()

    for block in blocks:
        if block.heading:
            close()
            if block.level == 1 and block.text == title:
                path.clear()
                continue
            path[:] = [(level, title) for level, title in path if level < block.level]
            path.append((block.level, block.text))
            continue
        if block.page != page:
            close()
            page = block.page
        for piece in _pieces(block.text, max_tokens):
            if current and estimate_tokens("\n".join([*current, piece])) > max_tokens:
                close()
            current.append(piece)
    close()
    return passages


def _pieces(text: str, max_tokens: int) -> list[str]:
    """``text`` as pieces that each fit ``max_tokens``: whole, else by sentences, else by words."""
    if estimate_tokens(text) <= max_tokens:
        return [text]
    pieces: list[str] = []
    for sentence in _SENTENCE_END.split(text):
        words = sentence.split()
        while words:
            taken: list[str] = []
            while words and estimate_tokens(" ".join([*taken, words[0]])) <= max_tokens:
                taken.append(words.pop(0))
            if not taken:  # one word longer than the budget
                taken.append(words.pop(0)[: max_tokens * 4])
            piece = " ".join(taken)
            if pieces and estimate_tokens(f"{pieces[-1]} {piece}") <= max_tokens:
                pieces[-1] = f"{pieces[-1]} {piece}"
            else:
                pieces.append(piece)
    return pieces
