"""Prediction log: one row per served decision (scores, action, model version, time, optional content).

Revision ID: 0002
Revises: 0001
Create Date: 2026-05-02

A frozen snapshot: it never imports serve.db.schema, so later changes there need a new migration.
The log lives beside the review queue (same database, same migrations) so one URL and one migration lock
cover both; `review_item_id` is deliberately not a foreign key, so the log may also sit in a database of its
own (the migrations create an empty queue there, which costs nothing).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
When = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "prediction_log",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("post_id", sa.String(255), nullable=False),
        sa.Column("model_version", sa.String(255), nullable=False),
        sa.Column("created_at", When, nullable=False),
        sa.Column("scores", sa.JSON, nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("drivers", sa.JSON, nullable=False),
        sa.Column("reason", sa.String(64), nullable=True),
        sa.Column("review_item_id", Id, nullable=True),
        sa.Column("text", sa.Text, nullable=True),
        sa.Column("image", sa.LargeBinary, nullable=True),
        sa.Column("image_mime", sa.String(100), nullable=True),
    )
    op.create_index("ix_prediction_log_created_at", "prediction_log", ["created_at"])
    op.create_index("ix_prediction_log_model_created", "prediction_log", ["model_version", "created_at"])


def downgrade() -> None:
    op.drop_table("prediction_log")
