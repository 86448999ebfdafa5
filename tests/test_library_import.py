"""Reading guideline files into passages: each format, headings as sections, pages, refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
from fpdf import FPDF
from pypdf import PdfWriter
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.library.importer import import_file
from bot.library.passages import MAX_PASSAGE_TOKENS, split_passages
from bot.library.readers import LibraryImportError, read_document
from bot.library.words import estimate_tokens
from storage.models import LibraryPassage
from storage.repositories.library import list_documents

Sessions = async_sessionmaker[AsyncSession]

MARKDOWN = """# Child Health Manual

Intro paragraph about the manual.

## Diarrhoea

### Some dehydration

Give **ORS** over four hours, see [the chart](http://example.org/chart).

- continue breastfeeding
- give zinc

Second section
--------------

Text under a setext heading.
"""

TEXT = """CHILD HEALTH NOTES

Plain introduction.

FEVER

Check for stiff neck.

Cough
=====

Count the breaths.
"""

HTML = """<html><head><title>Clinic Handbook</title><style>p {color: red}</style></head>
<body><nav><p>Home | About</p></nav>
<h1>Clinic Handbook</h1><p>Welcome text.</p>
<h2>Burns</h2><p>Cool the burn with water for <b>twenty</b> minutes.</p>
<ul><li>no butter</li><li>cover it</li></ul>
<h3>Children</h3><p>Weigh the child &amp; give fluids.</p>
<script>var secret = "not text";</script>
</body></html>"""


def _sections(path: Path) -> list[tuple[str, str]]:
    document = read_document(path)
    return [(p.section, p.text) for p in split_passages(document.blocks, document.title)]


def test_markdown_headings_become_section_paths(tmp_path: Path) -> None:
    path = tmp_path / "manual.md"
    path.write_text(MARKDOWN, encoding="utf-8")
    document = read_document(path)
    assert document.format == "markdown"
    assert document.title == "Child Health Manual"
    passages = _sections(path)
    assert passages[0] == ("", "Intro paragraph about the manual.")
    section, text = passages[1]
    assert section == "Diarrhoea › Some dehydration"
    assert "Give ORS over four hours, see the chart." in text  # markup and link target gone
    assert "• continue breastfeeding\n• give zinc" in text
    assert passages[2] == ("Second section", "Text under a setext heading.")


def test_plain_text_capital_and_underlined_headings(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text(TEXT, encoding="utf-8")
    passages = _sections(path)
    assert passages == [
        ("CHILD HEALTH NOTES", "Plain introduction."),
        ("FEVER", "Check for stiff neck."),
        ("Cough", "Count the breaths."),
    ]


def test_html_headings_paragraphs_and_skipped_parts(tmp_path: Path) -> None:
    path = tmp_path / "handbook.html"
    path.write_text(HTML, encoding="utf-8")
    document = read_document(path)
    assert document.title == "Clinic Handbook"
    passages = _sections(path)
    assert passages[0] == ("", "Welcome text.")
    assert passages[1][0] == "Burns"
    assert "Cool the burn with water for twenty minutes." in passages[1][1]
    assert "• no butter\n• cover it" in passages[1][1]
    assert passages[2] == ("Burns › Children", "Weigh the child & give fluids.")
    everything = " ".join(text for _, text in passages)
    assert "Home | About" not in everything
    assert "secret" not in everything


def _text_pdf(path: Path) -> None:
    pdf = FPDF()
    pdf.set_title("Maternal Care Guide")
    pdf.set_font("helvetica", size=12)
    pdf.add_page()
    pdf.start_section("Antenatal visits")
    pdf.multi_cell(0, 8, "Every pregnant woman should have at least eight contacts.")
    pdf.add_page()
    pdf.start_section("Pre-eclampsia")
    pdf.multi_cell(0, 8, "Measure the blood pressure at every visit. Refer if 140/90 or higher.")
    pdf.output(str(path))


def test_pdf_keeps_pages_and_outline_sections(tmp_path: Path) -> None:
    path = tmp_path / "maternal.pdf"
    _text_pdf(path)
    document = read_document(path)
    assert document.format == "pdf"
    assert document.title == "Maternal Care Guide"
    passages = split_passages(document.blocks, document.title)
    assert [(p.section, p.page) for p in passages] == [("Antenatal visits", 1), ("Pre-eclampsia", 2)]
    assert "at least eight contacts" in passages[0].text
    assert "Refer if 140/90 or higher." in passages[1].text


def test_pdf_without_a_text_layer_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "scan.pdf"
    writer = PdfWriter()
    writer.add_blank_page(width=595, height=842)  # what a scan is to a text extractor: no text
    with path.open("wb") as handle:
        writer.write(handle)
    with pytest.raises(LibraryImportError, match="no text layer"):
        read_document(path)


def test_unknown_format_and_broken_files_are_refused(tmp_path: Path) -> None:
    docx = tmp_path / "guide.docx"
    docx.write_bytes(b"PK\x03\x04")
    with pytest.raises(LibraryImportError, match="unknown format"):
        read_document(docx)
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(b"%PDF-1.4 not really")
    with pytest.raises(LibraryImportError, match=r"broken\.pdf"):
        read_document(broken)
    latin = tmp_path / "latin.txt"
    latin.write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(LibraryImportError, match="not UTF-8"):
        read_document(latin)


def test_long_sections_are_cut_to_passage_size_at_sentence_ends(tmp_path: Path) -> None:
    sentence = "Give the dose slowly and watch the child closely for twenty minutes afterwards. "
    path = tmp_path / "long.md"
    path.write_text(f"# Long\n\n## Dosing\n\n{sentence * 40}\n", encoding="utf-8")
    passages = _sections(path)
    assert len(passages) > 3
    assert all(section == "Dosing" for section, _ in passages)
    assert all(estimate_tokens(text) <= MAX_PASSAGE_TOKENS for _, text in passages)
    assert all(text.endswith("afterwards.") for _, text in passages)


async def test_import_of_each_format_stores_sections_and_pages(
    sessionmaker: Sessions, tmp_path: Path
) -> None:
    files = {"manual.md": MARKDOWN, "notes.txt": TEXT, "handbook.html": HTML}
    for name, content in files.items():
        (tmp_path / name).write_text(content, encoding="utf-8")
    _text_pdf(tmp_path / "maternal.pdf")
    async with sessionmaker.begin() as session:
        for name in [*files, "maternal.pdf"]:
            assert not (await import_file(session, tmp_path / name, language="en")).already
        again = await import_file(session, tmp_path / "manual.md", title="Other title")
    assert again.already  # same bytes: the same document, not a second copy
    async with sessionmaker() as session:
        documents = await list_documents(session)
        passages = (await session.execute(select(LibraryPassage).order_by(LibraryPassage.id))).scalars().all()
    assert [(d.format, d.title, d.source) for d in documents] == [
        ("markdown", "Child Health Manual", "manual.md"),
        ("text", "notes", "notes.txt"),  # no underlined first line: the file's name
        ("html", "Clinic Handbook", "handbook.html"),
        ("pdf", "Maternal Care Guide", "maternal.pdf"),
    ]
    assert [d.passages for d in documents] == [3, 3, 3, 2]
    pdf = documents[3].id
    assert [(p.section, p.page) for p in passages if p.document_id == pdf] == [
        ("Antenatal visits", 1),
        ("Pre-eclampsia", 2),
    ]
    assert {p.page for p in passages if p.document_id != pdf} == {None}
