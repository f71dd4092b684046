"""The queue's tables as SQLAlchemy Core objects: what the store's queries are written against.

This module describes the schema at the newest migration; the migrations in `migrations/versions/` create
it (they are frozen snapshots and never import this file). `tests/test_review_queue.py` compares the two, so
a column added here without a migration fails a test instead of a deployment.
"""

from __future__ import annotations

from datetime import datetime, timezone

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

POST_ID_MAX = 255  # characters in a post id: the column's size, and the API's limit (serve.requests)
VERSION_TABLE = "review_queue_version"  # Alembic's version table; named so it cannot clash with another app's

metadata = sa.MetaData()

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets 64-bit ids.
Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


class UTCDateTime(sa.TypeDecorator):
    """Timezone-aware UTC datetimes on both engines.

    PostgreSQL stores `timestamptz`. SQLite has no datetime type: SQLAlchemy stores an ISO string without
    an offset, so we store naive UTC there and re-attach UTC on the way out; the strings then sort and compare
    in time order, which the lease-expiry queries rely on.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: the review queue stores timezone-aware UTC times")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


items = sa.Table(
    "items",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("post_id", sa.String(POST_ID_MAX), nullable=False, unique=True),
    sa.Column("text", sa.Text, nullable=True),
    sa.Column("image", sa.LargeBinary, nullable=True),
    sa.Column("image_mime", sa.String(100), nullable=True),
    sa.Column("scores", sa.JSON, nullable=False),  # {category: {"fused": s, "text": s|None, "image": s|None}}
    sa.Column("action", sa.String(16), nullable=False),  # the model's action
    sa.Column("model_version", sa.String(255), nullable=False),
    sa.Column("priority", sa.Float, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("reason", sa.String(64), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("claim_owner", sa.String(255), nullable=True),
    sa.Column("lease_expires_at", UTCDateTime, nullable=True),
    # moderation.policy.Sampling in force at enqueue (migration 0004); NULL for items enqueued before it.
    sa.Column("sampling", sa.JSON, nullable=True),
    # The text read from the item's picture (migration 0005); NULL without a picture or OCR.
    sa.Column("ocr_text", sa.Text, nullable=True),
    sa.CheckConstraint("status IN ('pending', 'claimed', 'decided')", name="ck_items_status"),
    # The claim query's order: open items by priority, then age.
    sa.Index("ix_items_queue_order", "status", "priority", "created_at"),
)

decisions = sa.Table(
    "decisions",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("item_id", Id, sa.ForeignKey("items.id"), nullable=False),
    sa.Column("reviewer", sa.String(255), nullable=False),
    sa.Column("action", sa.String(16), nullable=False),
    sa.Column("labels", sa.JSON, nullable=False),  # {category: 0|1}, only what the reviewer decided
    sa.Column("note", sa.Text, nullable=False),
    sa.Column("decided_at", UTCDateTime, nullable=False),
    sa.CheckConstraint("action IN ('allow', 'block')", name="ck_decisions_action"),
    # One decision per (item, reviewer): a decision is never overwritten or doubled, and a second opinion
    # (ReviewQueue.request_second_review) always comes from someone else. Its index also serves item lookups.
    sa.UniqueConstraint("item_id", "reviewer", name="uq_decisions_item_reviewer"),
    sa.Index("ix_decisions_decided_at", "decided_at"),
)

audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("event", sa.String(32), nullable=False),
    sa.Column("item_id", Id, sa.ForeignKey("items.id"), nullable=True),  # None for queue-wide events (export)
    sa.Column("actor", sa.String(255), nullable=False),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("details", sa.JSON, nullable=False),
    sa.Index("ix_audit_log_item_id", "item_id"),
)

# One row per served decision (serve.db.prediction_log): the monitoring record, not a review item. Content
# columns are filled only when content logging is on, and emptied after the retention period.
prediction_log = sa.Table(
    "prediction_log",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("post_id", sa.String(POST_ID_MAX), nullable=False),  # not unique: a post may be scored again
    sa.Column("model_version", sa.String(255), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("scores", sa.JSON, nullable=False),  # {category: fused score}
    sa.Column("action", sa.String(16), nullable=False),
    sa.Column("drivers", sa.JSON, nullable=False),  # [category, ...] that drove the action
    sa.Column("reason", sa.String(64), nullable=True),
    sa.Column("review_item_id", Id, nullable=True),  # items.id, not a foreign key: the log may live elsewhere
    sa.Column("text", sa.Text, nullable=True),
    sa.Column("image", sa.LargeBinary, nullable=True),
    sa.Column("image_mime", sa.String(100), nullable=True),
    # Drift windows read by time, usually of one model version.
    sa.Index("ix_prediction_log_created_at", "created_at"),
    sa.Index("ix_prediction_log_model_created", "model_version", "created_at"),
)
