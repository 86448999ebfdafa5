"""Review-console login attempts per client, in the database so that every console process shares them.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create ``login_limits`` (sha256 of the client address, window start, attempts)."""
    op.create_table(
        "login_limits",
        sa.Column("client_sha256", sa.String(length=64), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("client_sha256", name=op.f("pk_login_limits")),
    )
    op.create_index(op.f("ix_login_limits_window_start"), "login_limits", ["window_start"])


def downgrade() -> None:
    """Drop the table."""
    op.drop_index(op.f("ix_login_limits_window_start"), table_name="login_limits")
    op.drop_table("login_limits")
