"""The guideline library: documents, passages and their full-text index; questions name their passages.

SQLite: an FTS5 table ``library_fts`` (porter stemming over unicode61, diacritics removed; rowid =
passage id). PostgreSQL: a ``search`` tsvector column on ``library_passages`` with a GIN index.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create the two tables and the index; add the questions' passage ids and library version."""
    op.create_table(
        "library_documents",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("source", sa.String(length=255), nullable=False),
        sa.Column("format", sa.String(length=8), nullable=False),
        sa.Column("language", sa.String(length=8), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("passages", sa.Integer(), nullable=False),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "format IN ('markdown', 'text', 'html', 'pdf')", name=op.f("ck_library_documents_format")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_library_documents")),
        sa.UniqueConstraint("sha256", name=op.f("uq_library_documents_sha256")),
    )
    op.create_table(
        "library_passages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("document_id", sa.Integer(), nullable=False),
        sa.Column("ordinal", sa.Integer(), nullable=False),
        sa.Column("section", sa.String(length=500), nullable=False),
        sa.Column("page", sa.Integer(), nullable=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("tokens", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["document_id"],
            ["library_documents.id"],
            name=op.f("fk_library_passages_document_id_library_documents"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_library_passages")),
    )
    op.create_index(
        op.f("ix_library_passages_document_id"), "library_passages", ["document_id"], unique=False
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE library_passages ADD COLUMN search tsvector")
        op.execute("CREATE INDEX ix_library_passages_search ON library_passages USING gin (search)")
    else:
        op.execute(
            "CREATE VIRTUAL TABLE library_fts USING fts5(title, section, text, "
            "tokenize = 'porter unicode61 remove_diacritics 2')"
        )
    op.add_column("questions", sa.Column("passage_ids", sa.String(length=200), nullable=True))
    op.add_column("questions", sa.Column("library_version", sa.String(length=16), nullable=True))


def downgrade() -> None:
    """Drop the library and the questions' two columns (SQLite: by copying the table)."""
    with op.batch_alter_table("questions") as batch:
        batch.drop_column("library_version")
        batch.drop_column("passage_ids")
    if op.get_bind().dialect.name != "postgresql":
        op.execute("DROP TABLE library_fts")
    op.drop_index(op.f("ix_library_passages_document_id"), table_name="library_passages")
    op.drop_table("library_passages")
    op.drop_table("library_documents")
