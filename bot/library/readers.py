"""Read Markdown, plain text, HTML and PDF files into blocks (headings and paragraphs).

- Markdown: ATX (``# Title``) and setext (underlined) headings; inline markup and links are
  reduced to their text.
- Plain text: underlined headings (``====`` / ``----``) and lines in capitals are headings.
- HTML: ``h1``-``h6`` are headings; ``p``, ``li``, ``td``, ``dd``, ``pre`` and ``blockquote`` are
  paragraphs; scripts, styles and navigation are skipped; ``<title>`` names the document.
- PDF (pypdf): the text layer of each page, sections from the document's outline (bookmarks).
  A PDF without a text layer (a scan) is refused: it needs OCR first.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from typing import ClassVar

from bot.errors import BotError
from bot.library.blocks import Block, Document

SUFFIXES = {
    ".md": "markdown",
    ".markdown": "markdown",
    ".txt": "text",
    ".text": "text",
    ".html": "html",
    ".htm": "html",
    ".pdf": "pdf",
}
_ATX = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
_SETEXT = re.compile(r"^\s{0,3}(=+|-+)\s*$")
_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_INLINE = re.compile(r"(\*\*|__|\*|`+|~~)")
_LIST = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+")


class LibraryImportError(BotError):
    """A file that cannot be imported (unknown format, unreadable, or no text)."""


def read_document(path: Path) -> Document:
    """Read ``path`` by its suffix; raises LibraryImportError when it cannot be used."""
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        known = ", ".join(sorted(SUFFIXES))
        raise LibraryImportError(f"{path.name}: unknown format (use one of {known})")
    if kind == "pdf":
        return read_pdf(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise LibraryImportError(f"{path.name}: not UTF-8 text") from None
    reader = {"markdown": read_markdown, "text": read_text, "html": read_html}[kind]
    return reader(text)


def _clean_inline(text: str) -> str:
    """Markdown inline markup reduced to its words."""
    return " ".join(_INLINE.sub("", _LINK.sub(r"\1", text)).split())


def _paragraphs(lines: list[str], clean: bool) -> list[Block]:
    """Blank-line separated paragraphs; list items stay on their own line inside a paragraph."""
    blocks, current = [], []
    for line in [*lines, ""]:
        if line.strip():
            item = _LIST.sub("• ", line) if _LIST.match(line) else line.strip()
            current.append(_clean_inline(item) if clean else " ".join(item.split()))
        elif current:
            blocks.append(
                Block("\n".join(current) if any(c.startswith("• ") for c in current) else " ".join(current))
            )
            current = []
    return blocks


def _lines_to_blocks(text: str, markdown: bool) -> list[Block]:
    """Headings and paragraphs of a line-based text."""
    lines, blocks, pending = text.splitlines(), [], list[str]()
    index = 0
    while index < len(lines):
        line = lines[index]
        following = lines[index + 1] if index + 1 < len(lines) else ""
        atx = _ATX.match(line) if markdown else None
        if atx:
            blocks += _paragraphs(pending, markdown)
            pending = []
            blocks.append(Block(_clean_inline(atx.group(2)), level=len(atx.group(1))))
        elif line.strip() and _SETEXT.match(following) and not pending_has_text(pending):
            blocks += _paragraphs(pending, markdown)
            pending = []
            level = 1 if following.strip().startswith("=") else 2
            blocks.append(Block(_clean_inline(line) if markdown else line.strip(), level=level))
            index += 1
        elif not markdown and _capitals_heading(line, pending):
            blocks += _paragraphs(pending, markdown)
            pending = []
            blocks.append(Block(line.strip(), level=2))
        else:
            pending.append(line)
        index += 1
    return blocks + _paragraphs(pending, markdown)


def pending_has_text(pending: list[str]) -> bool:
    """Whether the lines waiting to become a paragraph end in text (a setext line needs a blank before)."""
    return bool(pending) and bool(pending[-1].strip())


def _capitals_heading(line: str, pending: list[str]) -> bool:
    """A short line in capitals, on its own (after a blank line): a plain-text heading."""
    words = line.strip()
    letters = [char for char in words if char.isalpha()]
    alone = not pending_has_text(pending)
    return alone and len(letters) >= 3 and len(words) <= 80 and all(char.isupper() for char in letters)


def read_markdown(text: str) -> Document:
    """A Markdown document; its first level-1 heading is its title."""
    blocks = _lines_to_blocks(text, markdown=True)
    title = next((block.text for block in blocks if block.level == 1), None)
    return Document("markdown", title, blocks)


def read_text(text: str) -> Document:
    """A plain-text document; an underlined first line is its title."""
    blocks = _lines_to_blocks(text, markdown=False)
    title = blocks[0].text if blocks and blocks[0].level == 1 else None
    return Document("text", title, blocks)


class _HTMLBlocks(HTMLParser):
    """Collects headings and paragraphs of an HTML page."""

    _SKIP = frozenset({"script", "style", "nav", "noscript", "template", "svg"})
    _PARAGRAPHS = frozenset({"p", "li", "td", "th", "dd", "dt", "pre", "blockquote", "figcaption"})
    _HEADINGS: ClassVar[dict[str, int]] = {f"h{n}": n for n in range(1, 7)}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[Block] = []
        self.title: str | None = None
        self._skip = 0
        self._text: list[str] = []
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        """Open a block (or a skipped region)."""
        if tag in self._SKIP:
            self._skip += 1
        elif tag == "title":
            self._in_title = True
        elif tag in self._HEADINGS or tag in self._PARAGRAPHS or tag in ("br", "div", "tr", "section"):
            self._flush()

    def handle_endtag(self, tag: str) -> None:
        """Close a block."""
        if tag in self._SKIP:
            self._skip = max(0, self._skip - 1)
        elif tag == "title":
            self._in_title = False
        elif tag in self._HEADINGS:
            self._flush(self._HEADINGS[tag])
        elif tag in self._PARAGRAPHS or tag in ("div", "tr", "section"):
            self._flush(prefix="• " if tag == "li" else "")

    def handle_data(self, data: str) -> None:
        """Text of the current block."""
        if self._in_title:
            self.title = " ".join(((self.title or "") + " " + data).split()) or None
        elif not self._skip:
            self._text.append(data)

    def _flush(self, level: int = 0, prefix: str = "") -> None:
        """End the current block of text, if any."""
        text = " ".join("".join(self._text).split())
        self._text = []
        if text:
            self.blocks.append(Block(prefix + text if level == 0 else text, level=level))


def read_html(text: str) -> Document:
    """An HTML page; ``<title>`` (else its first ``h1``) is its title."""
    parser = _HTMLBlocks()
    parser.feed(text)
    parser.close()
    parser._flush()
    blocks = _merge_items(parser.blocks)
    title = parser.title or next((block.text for block in blocks if block.level == 1), None)
    return Document("html", title, blocks)


def _merge_items(blocks: list[Block]) -> list[Block]:
    """Consecutive list items as one paragraph (one item per line)."""
    merged: list[Block] = []
    for block in blocks:
        previous = merged[-1] if merged else None
        if (
            previous
            and not previous.heading
            and block.text.startswith("• ")
            and previous.text.startswith("• ")
        ):
            merged[-1] = Block(f"{previous.text}\n{block.text}", page=block.page)
        else:
            merged.append(block)
    return merged


def read_pdf(path: Path) -> Document:
    """A PDF's text layer page by page; sections from its outline. No text at all: refused."""
    from pypdf import PdfReader  # imported when a PDF is read
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(path)
        if reader.is_encrypted and not reader.decrypt(""):
            raise LibraryImportError(f"{path.name}: the PDF is encrypted; save an unprotected copy first")
        pages = [page.extract_text() or "" for page in reader.pages]
        outline = _outline(reader)
        title = (reader.metadata.title if reader.metadata else None) or None
    except (PdfReadError, OSError, ValueError) as exc:
        raise LibraryImportError(f"{path.name}: not a readable PDF ({type(exc).__name__})") from None
    if not any(page.strip() for page in pages):
        raise LibraryImportError(
            f"{path.name}: the PDF has no text layer (a scanned document?). Run OCR on it first "
            "(for example with ocrmypdf) and add the result."
        )
    blocks: list[Block] = []
    for number, text in enumerate(pages, start=1):
        for level, heading in outline.get(number, []):
            blocks.append(Block(heading, level=level, page=number))
        for paragraph in _pdf_paragraphs(text, {h for _, h in outline.get(number, [])}):
            blocks.append(Block(paragraph, page=number))
    return Document("pdf", title, blocks)


def _outline(reader: object) -> dict[int, list[tuple[int, str]]]:
    """Outline entries (level, title) by the page (1-based) they point to."""
    from pypdf import PdfReader

    assert isinstance(reader, PdfReader)
    found: dict[int, list[tuple[int, str]]] = {}

    def walk(items: list[object], level: int) -> None:
        for item in items:
            if isinstance(item, list):
                walk(item, level + 1)
                continue
            try:
                number = reader.get_destination_page_number(item)  # type: ignore[arg-type]
            except (KeyError, ValueError, TypeError, AttributeError):
                continue
            title = " ".join(str(getattr(item, "title", "") or "").split())
            if title and number is not None:
                page = number + 1
                found.setdefault(page, []).append((min(level, 6), title))

    try:
        walk(list(reader.outline), 1)
    except (KeyError, ValueError, TypeError, AttributeError):
        return {}
    return found


def _pdf_paragraphs(text: str, headings: set[str]) -> list[str]:
    """A page's text as paragraphs: at blank lines, or at a sentence's end once 400 characters gathered."""
    paragraphs: list[str] = []
    current: list[str] = []
    for raw in [*text.splitlines(), ""]:
        line = " ".join(raw.split())
        if line in headings:  # the outline's heading, printed on the page
            continue
        if line:
            current.append(line)
        full = line.endswith((".", "!", "?", ":")) and sum(map(len, current)) > 400
        if current and (not line or full):
            paragraphs.append(" ".join(current))
            current = []
    return paragraphs
