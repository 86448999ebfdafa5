"""Clinician handover: the ``cases`` table, the ``clinician`` role and the per-question consent scope.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (table, constraint, column, values before, values after)
_CHECKS = (
    ("review_accounts", "role", ("reviewer", "admin"), ("reviewer", "admin", "clinician")),
    ("consent_events", "scope", ("service", "research"), ("service", "research", "clinician")),
    ("erasures", "kind", ("question", "user"), ("question", "user", "case")),
)


def _in(column: str, values: tuple[str, ...]) -> str:
    """``column IN ('a', 'b')``."""
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _timestamp(name: str, *, nullable: bool = True) -> sa.Column[object]:
    """A timezone-aware timestamp column (UTC)."""
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _set_checks(after: bool) -> None:
    """Replace the three check constraints (SQLite: by copying each table)."""
    for table, column, before, later in _CHECKS:
        name = f"ck_{table}_{column}"
        with op.batch_alter_table(table, recreate="auto") as batch:
            batch.drop_constraint(op.f(name), type_="check")
            batch.create_check_constraint(column, sa.text(_in(column, later if after else before)))


def upgrade() -> None:
    """Widen the checks, add ``consent_events.question_id`` and create ``cases``."""
    _set_checks(after=True)
    op.add_column("consent_events", sa.Column("question_id", sa.String(length=32), nullable=True))
    op.create_table(
        "cases",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("question_id", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("consent_id", sa.Integer(), nullable=False),
        sa.Column("language", sa.String(length=8), nullable=False),
        sa.Column("danger", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=True),
        sa.Column("question_text", sa.Text(), nullable=True),
        sa.Column("answer_text", sa.Text(), nullable=True),
        sa.Column("reply_text", sa.Text(), nullable=True),
        sa.Column("reply_sha256", sa.String(length=64), nullable=True),
        sa.Column("claimed_by", sa.Integer(), nullable=True),
        sa.Column("rating", sa.String(length=8), nullable=True),
        _timestamp("opened_at", nullable=False),
        _timestamp("claimed_at"),
        _timestamp("replied_at"),
        _timestamp("closed_at"),
        _timestamp("overdue_at"),
        _timestamp("erased_at"),
        sa.CheckConstraint(
            "status IN ('open', 'claimed', 'replied', 'closed')", name=op.f("ck_cases_status")
        ),
        sa.CheckConstraint(
            "outcome IS NULL OR outcome IN ('delivered', 'undeliverable', 'erased')",
            name=op.f("ck_cases_outcome"),
        ),
        sa.ForeignKeyConstraint(
            ["question_id"], ["questions.id"], name=op.f("fk_cases_question_id_questions")
        ),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_cases_user_id_users")),
        sa.ForeignKeyConstraint(
            ["consent_id"], ["consent_events.id"], name=op.f("fk_cases_consent_id_consent_events")
        ),
        sa.ForeignKeyConstraint(
            ["claimed_by"], ["review_accounts.id"], name=op.f("fk_cases_claimed_by_review_accounts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cases")),
        sa.UniqueConstraint("question_id", name=op.f("uq_cases_question_id")),
    )
    op.create_index(op.f("ix_cases_user_id"), "cases", ["user_id"])
    op.create_index(op.f("ix_cases_status"), "cases", ["status"])
    op.create_index(op.f("ix_cases_opened_at"), "cases", ["opened_at"])


def downgrade() -> None:
    """Drop ``cases`` and the column, and narrow the checks again (clinician accounts must go first)."""
    op.drop_table("cases")
    with op.batch_alter_table("consent_events") as batch:
        batch.drop_column("question_id")
    _set_checks(after=False)
