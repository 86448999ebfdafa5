"""Initial schema: users, consent events, questions, answers and the audit chain.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _timestamp(name: str, *, nullable: bool = False) -> sa.Column[object]:
    """A timezone-aware timestamp column (UTC)."""
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _create_users() -> None:
    """Create ``users``."""
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("pseudonym", sa.String(length=64), nullable=False),
        sa.Column("language", sa.String(length=8), nullable=True),
        _timestamp("created_at"),
        sa.Column("service_consent", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("research_consent", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("consent_text_version", sa.String(length=32), nullable=True),
        _timestamp("erased_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("pseudonym", name=op.f("uq_users_pseudonym")),
    )


def _create_consent_events() -> None:
    """Create ``consent_events``."""
    op.create_table(
        "consent_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("scope", sa.String(length=16), nullable=False),
        sa.Column("text_version", sa.String(length=32), nullable=False),
        sa.Column("text_sha256", sa.String(length=64), nullable=False),
        sa.Column("language", sa.String(length=8), nullable=False),
        sa.Column("old_value", sa.String(length=16), nullable=True),
        sa.Column("new_value", sa.String(length=16), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        _timestamp("created_at"),
        sa.CheckConstraint(
            "new_value IN ('granted', 'declined', 'withdrawn')",
            name=op.f("ck_consent_events_new_value"),
        ),
        sa.CheckConstraint("scope IN ('service', 'research')", name=op.f("ck_consent_events_scope")),
        sa.CheckConstraint(
            "source IN ('button', 'command', 'expiry')", name=op.f("ck_consent_events_source")
        ),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_consent_events_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_consent_events")),
    )
    op.create_index(op.f("ix_consent_events_user_id"), "consent_events", ["user_id"])


def _create_questions() -> None:
    """Create ``questions``."""
    op.create_table(
        "questions",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("chat_pseudonym", sa.String(length=64), nullable=False),
        sa.Column("chat_type", sa.String(length=16), nullable=False),
        sa.Column("language", sa.String(length=8), nullable=True),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("text_sha256", sa.String(length=64), nullable=True),
        sa.Column("text_chars", sa.Integer(), nullable=False),
        sa.Column("research", sa.Boolean(), nullable=False),
        _timestamp("received_at"),
        _timestamp("enqueued_at", nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        _timestamp("erased_at", nullable=True),
        sa.CheckConstraint(
            "status IN ('queued', 'answered', 'cancelled', 'failed')",
            name=op.f("ck_questions_status"),
        ),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_questions_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_questions")),
    )
    op.create_index(op.f("ix_questions_status"), "questions", ["status"])
    op.create_index(op.f("ix_questions_user_id"), "questions", ["user_id"])


def _create_answers() -> None:
    """Create ``answers``."""
    op.create_table(
        "answers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("question_id", sa.String(length=32), nullable=False),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("text_sha256", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("model_sha256", sa.String(length=64), nullable=True),
        sa.Column("prompt_version", sa.String(length=32), nullable=False),
        sa.Column("prompt_tokens", sa.Integer(), nullable=False),
        sa.Column("completion_tokens", sa.Integer(), nullable=False),
        _timestamp("taken_at"),
        _timestamp("first_token_at", nullable=True),
        _timestamp("finished_at"),
        _timestamp("sent_at", nullable=True),
        sa.Column("worker", sa.String(length=64), nullable=False),
        sa.Column("stop_reason", sa.String(length=16), nullable=False),
        sa.CheckConstraint("status IN ('ok', 'failed')", name=op.f("ck_answers_status")),
        sa.ForeignKeyConstraint(
            ["question_id"], ["questions.id"], name=op.f("fk_answers_question_id_questions")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_answers")),
        sa.UniqueConstraint("question_id", name=op.f("uq_answers_question_id")),
    )


def _create_audit_events() -> None:
    """Create ``audit_events`` (SQLite AUTOINCREMENT: ids are never reused)."""
    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        _timestamp("created_at"),
        sa.Column("event", sa.String(length=32), nullable=False),
        sa.Column("subject", sa.String(length=64), nullable=True),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_events")),
        sa.UniqueConstraint("hash", name=op.f("uq_audit_events_hash")),
        sa.UniqueConstraint("prev_hash", name=op.f("uq_audit_events_prev_hash")),
        sqlite_autoincrement=True,
    )
    op.create_index(op.f("ix_audit_events_event"), "audit_events", ["event"])
    op.create_index(op.f("ix_audit_events_subject"), "audit_events", ["subject"])


def upgrade() -> None:
    """Create every table, constraint and index of the first schema."""
    _create_users()
    _create_consent_events()
    _create_questions()
    _create_answers()
    _create_audit_events()


def downgrade() -> None:
    """Drop everything ``upgrade`` created."""
    op.drop_table("audit_events")
    op.drop_table("answers")
    op.drop_table("questions")
    op.drop_table("consent_events")
    op.drop_table("users")
