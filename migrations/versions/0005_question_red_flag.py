"""The danger sign a question matched, recorded with the question (a rule label, never text).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add ``questions.red_flag`` (NULL: no danger sign, and for every question asked before)."""
    op.add_column("questions", sa.Column("red_flag", sa.String(length=32), nullable=True))


def downgrade() -> None:
    """Drop the column (SQLite: by copying the table)."""
    with op.batch_alter_table("questions") as batch:
        batch.drop_column("red_flag")
