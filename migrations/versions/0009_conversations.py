"""The conversation an answer belongs to and its turn in it (ids and numbers, never text).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add ``answers.conversation_id`` and ``answers.turn`` (NULL for every answer given before)."""
    op.add_column("answers", sa.Column("conversation_id", sa.String(length=32), nullable=True))
    op.add_column("answers", sa.Column("turn", sa.Integer(), nullable=True))
    op.create_index(op.f("ix_answers_conversation_id"), "answers", ["conversation_id"])


def downgrade() -> None:
    """Drop the columns (SQLite: by copying the table)."""
    op.drop_index(op.f("ix_answers_conversation_id"), table_name="answers")
    with op.batch_alter_table("answers") as batch:
        batch.drop_column("turn")
        batch.drop_column("conversation_id")
