"""Initial review-queue schema: items, decisions, and an append-only audit_log.

Revision ID: 0001
Revises:
Create Date: 2026-05-01

A frozen snapshot: it never imports serve.db.schema, so later changes there need a new migration.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
When = sa.DateTime(timezone=True)

# The audit log is append-only in the database itself, not only in our code: an UPDATE or DELETE from any
# client (a hand-run SQL session included) fails.
_PG_APPEND_ONLY = [
    """
    CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'audit_log is append-only: % is not allowed', TG_OP;
    END;
    $$
    """,
    """
    CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()
    """,
    """
    CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()
    """,
]
_SQLITE_APPEND_ONLY = [
    """
    CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
    BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: UPDATE is not allowed'); END
    """,
    """
    CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
    BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: DELETE is not allowed'); END
    """,
]


def upgrade() -> None:
    op.create_table(
        "items",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("post_id", sa.String(255), nullable=False, unique=True),
        sa.Column("text", sa.Text, nullable=True),
        sa.Column("image", sa.LargeBinary, nullable=True),
        sa.Column("image_mime", sa.String(100), nullable=True),
        sa.Column("scores", sa.JSON, nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("model_version", sa.String(255), nullable=False),
        sa.Column("priority", sa.Float, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(64), nullable=False),
        sa.Column("created_at", When, nullable=False),
        sa.Column("claim_owner", sa.String(255), nullable=True),
        sa.Column("lease_expires_at", When, nullable=True),
        sa.CheckConstraint("status IN ('pending', 'claimed', 'decided')", name="ck_items_status"),
    )
    op.create_index("ix_items_queue_order", "items", ["status", "priority", "created_at"])
    op.create_table(
        "decisions",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("item_id", Id, sa.ForeignKey("items.id"), nullable=False, unique=True),
        sa.Column("reviewer", sa.String(255), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("labels", sa.JSON, nullable=False),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("decided_at", When, nullable=False),
        sa.CheckConstraint("action IN ('allow', 'block')", name="ck_decisions_action"),
    )
    op.create_index("ix_decisions_decided_at", "decisions", ["decided_at"])
    op.create_table(
        "audit_log",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("item_id", Id, sa.ForeignKey("items.id"), nullable=True),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("at", When, nullable=False),
        sa.Column("details", sa.JSON, nullable=False),
    )
    op.create_index("ix_audit_log_item_id", "audit_log", ["item_id"])
    statements = _PG_APPEND_ONLY if op.get_bind().dialect.name == "postgresql" else _SQLITE_APPEND_ONLY
    for statement in statements:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TABLE audit_log")
        op.execute("DROP FUNCTION audit_log_append_only()")
    else:
        op.drop_table("audit_log")  # drops its triggers with it
    op.drop_table("decisions")
    op.drop_table("items")
