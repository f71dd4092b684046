"""The durable human-review queue: SQLite (embedded default, WAL) or PostgreSQL (many replicas), one API.

    from serve.review_queue import NewItem, open_queue

    queue = open_queue("sqlite:///review.db", categories=["hate", "violence"], severities={"violence": 2.0})
    item_id, created = queue.enqueue(NewItem(...), thresholds={"hate": {"block": 0.9, "review": 0.5}, ...})
    [item] = queue.claim("alice", lease_seconds=600)
    queue.decide(item.id, "alice", "block", {"hate": 1}, note="slur in caption")
    queue.export_decisions(Path("reviewed/decisions.jsonl"))

Modules: `records` (dataclasses, errors, label checks), `priority` (the ordering formula), `schema` (tables),
`engine` (per-backend set-up, write transactions, Alembic migrations in `migrations/`), `store` (the queue),
`export` (generic JSONL writer).
"""

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
    ReviewQueueError,
)
from .store import ReviewQueue, open_queue

__all__ = [
    "MODEL_ACTIONS",
    "REVIEW_ACTIONS",
    "AuditEvent",
    "ClaimError",
    "Decision",
    "Item",
    "ItemNotFound",
    "NewItem",
    "ReviewQueue",
    "ReviewQueueError",
    "compute_priority",
    "open_queue",
]
