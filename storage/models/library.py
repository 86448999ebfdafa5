"""The guideline library's tables: documents the deployer imported, their passages, word frequencies.

The full-text index is not an ORM table: SQLite keeps it in the FTS5 table ``library_fts`` (rowid =
passage id), PostgreSQL in the ``search`` tsvector column of ``library_passages`` (GIN index,
``fastupdate`` off since 0011). Both are created by migration 0007 and written by
``storage.repositories.library_index``; ``INDEX_NAMES`` lists them so the schema check (alembic
check) leaves them alone. The library holds no user data.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from storage.models.base import Base, one_of, utcnow

DOCUMENT_FORMATS = ("markdown", "text", "html", "pdf")
INDEX_TABLE = "library_fts"  # SQLite FTS5 (and its shadow tables library_fts_*)
INDEX_COLUMN = "search"  # PostgreSQL tsvector column of library_passages
INDEX_NAMES = (INDEX_TABLE, INDEX_COLUMN, "ix_library_passages_search")


class LibraryDocument(Base):
    """One imported guideline document, identified by the sha256 of its file."""

    __tablename__ = "library_documents"
    __table_args__ = (CheckConstraint(one_of("format", DOCUMENT_FORMATS), name="format"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    source: Mapped[str] = mapped_column(String(255))  # the file's name (no directory)
    format: Mapped[str] = mapped_column(String(8))
    language: Mapped[str] = mapped_column(String(8))
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    passages: Mapped[int] = mapped_column(Integer)
    added_at: Mapped[datetime] = mapped_column(default=utcnow)


class LibraryPassage(Base):
    """A passage of a document: its section path (``A › B``), page (PDF) and text."""

    __tablename__ = "library_passages"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    document_id: Mapped[int] = mapped_column(ForeignKey("library_documents.id"), index=True)
    ordinal: Mapped[int] = mapped_column(Integer)
    section: Mapped[str] = mapped_column(String(500))
    page: Mapped[int | None] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    tokens: Mapped[int] = mapped_column(Integer)  # an estimate (see bot.library.passages)


class LibraryTerm(Base):
    """How many passages contain a word stem (see storage.repositories.library_terms)."""

    __tablename__ = "library_terms"

    stem: Mapped[str] = mapped_column(String(16), primary_key=True)
    passages: Mapped[int] = mapped_column(Integer)
