"""Erasure tombstones; on PostgreSQL an application role that cannot change the audit trail.

The role ``meditron_app`` (NOLOGIN) may read and write every table but may not UPDATE, DELETE or
TRUNCATE ``audit_events``, ``consent_events`` or ``erasures``. Tables created later by the same
owner get the ordinary privileges by default. Run the application as a login role that is a
member of it (``CREATE ROLE meditron LOGIN PASSWORD '...' IN ROLE meditron_app``) and migrations
as the owner. When the migrating user may not create roles and the role does not exist, the
grants are skipped with a notice.

Revision ID: 0003
Revises: 0001
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

APP_ROLE = "meditron_app"  # also written literally in the SQL below

_GRANTS = """
DO $$
DECLARE
    may_create boolean;
    schema_name text := current_schema();
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'meditron_app') THEN
        SELECT rolsuper OR rolcreaterole INTO may_create FROM pg_roles WHERE rolname = current_user;
        IF NOT may_create THEN
            RAISE NOTICE 'role meditron_app is missing and % may not create it: no grants', current_user;
            RETURN;
        END IF;
        BEGIN
            CREATE ROLE meditron_app NOLOGIN;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;  -- created meanwhile by a concurrent migration of another database
        END;
    END IF;
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO meditron_app', schema_name);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA %I TO meditron_app',
                   schema_name);
    EXECUTE format('GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA %I TO meditron_app', schema_name);
    EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I '
                   'GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO meditron_app', schema_name);
    EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I '
                   'GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO meditron_app', schema_name);
    REVOKE UPDATE, DELETE, TRUNCATE ON audit_events, consent_events, erasures FROM meditron_app;
END $$;
"""

_REVOKE = """
DO $$
DECLARE
    schema_name text := current_schema();
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'meditron_app') THEN
        EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I REVOKE ALL ON TABLES FROM meditron_app',
                       schema_name);
        EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I REVOKE ALL ON SEQUENCES FROM meditron_app',
                       schema_name);
        EXECUTE format('REVOKE ALL ON ALL TABLES IN SCHEMA %I FROM meditron_app', schema_name);
        EXECUTE format('REVOKE ALL ON ALL SEQUENCES IN SCHEMA %I FROM meditron_app', schema_name);
        EXECUTE format('REVOKE ALL ON SCHEMA %I FROM meditron_app', schema_name);
    END IF;
END $$;
"""


def _create_erasures() -> None:
    """Create ``erasures`` (tombstones)."""
    op.create_table(
        "erasures",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("erased_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.String(length=16), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("ref", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("fields", sa.String(length=255), nullable=False),
        sa.Column("chars", sa.Integer(), nullable=False),
        sa.CheckConstraint("kind IN ('question', 'user')", name=op.f("ck_erasures_kind")),
        sa.CheckConstraint(
            "reason IN ('withdrawal', 'forget', 'retention')", name=op.f("ck_erasures_reason")
        ),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_erasures_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_erasures")),
    )
    op.create_index(op.f("ix_erasures_erased_at"), "erasures", ["erased_at"])
    op.create_index(op.f("ix_erasures_ref"), "erasures", ["ref"])
    op.create_index(op.f("ix_erasures_user_id"), "erasures", ["user_id"])


def upgrade() -> None:
    """Create ``erasures``; on PostgreSQL, the application role and its grants."""
    _create_erasures()
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_GRANTS)


def downgrade() -> None:
    """Drop ``erasures`` and the role's grants in this database (the role itself is cluster-wide)."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_REVOKE)
    op.drop_index(op.f("ix_erasures_user_id"), table_name="erasures")
    op.drop_index(op.f("ix_erasures_ref"), table_name="erasures")
    op.drop_index(op.f("ix_erasures_erased_at"), table_name="erasures")
    op.drop_table("erasures")
