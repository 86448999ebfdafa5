"""What a reader makes of a document: its title and a flat list of headings and paragraphs."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Block:
    """A heading (``level`` 1-6) or a paragraph (``level`` 0), with its page (PDF only)."""

    text: str
    level: int = 0
    page: int | None = None

    @property
    def heading(self) -> bool:
        """Whether this block is a heading."""
        return self.level > 0


@dataclass
class Document:
    """A document read from a file: format, the title it names itself (if any) and its blocks."""

    format: str
    title: str | None
    blocks: list[Block] = field(default_factory=list)
