"""Review items remember the sampling rates in force when they were enqueued.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26

`items.sampling` holds `moderation.policy.Sampling` as JSON ({"random_review_rate", "block_review_rate"}), so
live-quality estimates weight each sampled item by the rate that actually sampled it instead of asking the
operator. Nullable: items enqueued before this revision have no stored rates. A frozen snapshot: it never
imports serve.db.schema.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # batch mode: on SQLite an added nullable column is a plain ALTER TABLE ADD COLUMN (no table rebuild).
    with op.batch_alter_table("items") as batch:
        batch.add_column(sa.Column("sampling", sa.JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("items") as batch:
        batch.drop_column("sampling")
