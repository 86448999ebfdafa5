"""The library's word frequencies, and a PostgreSQL full-text index without a pending list.

``library_terms``: in how many passages each word stem occurs (retrieval leaves very common words
out of the index query); filled from the passages already imported.

PostgreSQL: the GIN index on ``library_passages.search`` is set to ``fastupdate = off``. With the
default (on), an import's rows wait in the index's pending list until the next vacuum, every
search must read that whole list, and the planner, seeing it, scans the table instead: 16 ms
instead of 0.7 ms a query on 10,000 passages (EXPLAIN ANALYZE). The library is written rarely and
read per question, so entries go straight into the index; the list already there is flushed.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _stems(value: str) -> set[str]:
    """storage.repositories.library_terms.stems as of this revision (five folded letters a word)."""
    folded = "".join(c for c in unicodedata.normalize("NFKD", value.lower()) if not unicodedata.combining(c))
    return {word[:5] for word in re.findall(r"\w+", folded)}


def upgrade() -> None:
    """Create ``library_terms`` and count the stored passages into it; GIN without pending list."""
    table = op.create_table(
        "library_terms",
        sa.Column("stem", sa.String(length=16), nullable=False),
        sa.Column("passages", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("stem", name=op.f("pk_library_terms")),
    )
    rows = op.get_bind().execute(
        sa.text(
            "SELECT d.title, p.section, p.text FROM library_passages p "
            "JOIN library_documents d ON d.id = p.document_id"
        )
    )
    counts: dict[str, int] = {}
    for title, section, body in rows:
        for key in _stems(f"{title} {section} {body}"):
            counts[key] = counts.get(key, 0) + 1
    if counts:
        op.bulk_insert(table, [{"stem": key, "passages": n} for key, n in counts.items()])
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER INDEX ix_library_passages_search SET (fastupdate = off)")
        op.execute("SELECT gin_clean_pending_list('ix_library_passages_search')")


def downgrade() -> None:
    """Drop the frequencies; the GIN index gets its pending list back."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER INDEX ix_library_passages_search RESET (fastupdate)")
    op.drop_table("library_terms")
