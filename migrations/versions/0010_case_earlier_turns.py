"""The earlier turns of a case's conversation, kept with the case (texts, erased like its question).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add ``cases.earlier_turns`` (NULL for every case opened before)."""
    op.add_column("cases", sa.Column("earlier_turns", sa.Text(), nullable=True))


def downgrade() -> None:
    """Drop the column (SQLite: by copying the table)."""
    with op.batch_alter_table("cases") as batch:
        batch.drop_column("earlier_turns")
