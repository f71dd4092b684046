"""The service's database: the durable review queue and the prediction log, on SQLite (embedded default,
WAL) or PostgreSQL (many replicas), with one schema and one set of Alembic migrations.

    from serve.db import NewItem, open_queue, open_prediction_log

    queue = open_queue("sqlite:///review.db", categories=["hate", "violence"], severities={"violence": 2.0})
    item_id, created = queue.enqueue(NewItem(...), thresholds)       # moderation.policy.Thresholds
    [item] = queue.claim("alice", lease_seconds=600)
    queue.decide(item.id, "alice", "block", {"hate": 1}, note="placeholder note")
    queue.export_decisions(Path("reviewed/decisions.jsonl"))

Modules: `records` (dataclasses, errors, label checks), `priority` (the ordering formula), `schema` (tables),
`engine` (per-backend set-up, write transactions, Alembic migrations in `migrations/`), `queries` (shared
SQL), `review_queue` (the queue), `export` (generic JSONL writer), `prediction_log` (one row per served
decision, for monitoring).
"""

from .prediction_log import LoggedPrediction, PredictionLog, PredictionWindow, open_prediction_log
from .priority import compute_priority
from .records import (
    MODEL_ACTIONS,
    REVIEW_ACTIONS,
    AuditEvent,
    ClaimError,
    Decision,
    Item,
    ItemNotFound,
    NewItem,
    QueueUnavailable,
    Review,
    ReviewQueueError,
)
from .review_queue import ReviewQueue, open_queue

__all__ = [
    "MODEL_ACTIONS",
    "REVIEW_ACTIONS",
    "AuditEvent",
    "ClaimError",
    "Decision",
    "Item",
    "ItemNotFound",
    "LoggedPrediction",
    "NewItem",
    "PredictionLog",
    "PredictionWindow",
    "QueueUnavailable",
    "Review",
    "ReviewQueue",
    "ReviewQueueError",
    "compute_priority",
    "open_prediction_log",
    "open_queue",
]
