"""The queue's shared SQL: what counts as open, the serving order, the dashboard counts, decided rows, reviews.

Written once in SQLAlchemy Core and compiled per backend. The store's write paths and the read paths use the
same `open_for_claim` and `QUEUE_ORDER`, so `list_pending` shows exactly the order `claim` serves.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from .schema import decisions, items

QUEUE_ORDER = (items.c.priority.desc(), items.c.created_at, items.c.id)  # urgent first, then oldest
EXPORT_PAGE = 500  # decisions read per query while exporting, so memory stays flat on a large queue


def open_for_claim(now: datetime) -> sa.ColumnElement[bool]:
    """Items a claim may take: pending ones, and claimed ones whose lease has expired.

    An expired lease returns the item to the queue without any background job: claims simply treat it as
    pending (its status reads "claimed" until then).
    """
    expired = sa.and_(items.c.status == "claimed", items.c.lease_expires_at <= now)
    return sa.or_(items.c.status == "pending", expired)


@dataclass(frozen=True)
class ClaimFilter:
    """Which open items a reviewer wants to work on (all of them by default).

    `reason`: the enqueue reason (review_band, random_sample, block_sample); `since` / `until`: enqueued in
    [since, until); `category` with `category_min` ({model version: score}): the category's fused score is at
    or above the given score for the item's model version (the reviewer API passes each version's review
    threshold, so "hate" means items hate sent or could have sent to review); versions not named use
    `default_min`.
    """

    reason: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    category: str | None = None
    category_min: Mapping[str, float] = field(default_factory=dict)
    default_min: float = 0.5

    def condition(self) -> sa.ColumnElement[bool]:
        parts = []
        if self.reason is not None:
            parts.append(items.c.reason == self.reason)
        if self.since is not None:
            parts.append(items.c.created_at >= self.since)
        if self.until is not None:
            parts.append(items.c.created_at < self.until)
        if self.category is not None:
            score = items.c.scores[(self.category, "fused")].as_float()
            named = [sa.and_(items.c.model_version == v, score >= t) for v, t in self.category_min.items()]
            others = sa.and_(items.c.model_version.not_in(list(self.category_min)), score >= self.default_min)
            parts.append(sa.or_(*named, others))
        return sa.and_(sa.true(), *parts)


def queue_stats(conn: Connection, now: datetime) -> dict[str, Any]:
    """pending (expired claims included), claimed (live), decided, by_reason (all items per enqueue reason),
    by_action (decisions per reviewer action), oldest_pending_age_s (None when nothing is open)."""
    live = sa.and_(items.c.status == "claimed", items.c.lease_expires_at > now)
    count = sa.func.count()
    oldest = conn.execute(sa.select(sa.func.min(items.c.created_at)).where(open_for_claim(now))).scalar()
    return {
        "pending": conn.execute(sa.select(count).where(open_for_claim(now))).scalar_one(),
        "claimed": conn.execute(sa.select(count).where(live)).scalar_one(),
        "decided": conn.execute(sa.select(count).where(items.c.status == "decided")).scalar_one(),
        "by_reason": dict(conn.execute(sa.select(items.c.reason, count).group_by(items.c.reason)).all()),
        "by_action": dict(conn.execute(sa.select(decisions.c.action, count).group_by(decisions.c.action)).all()),
        "oldest_pending_age_s": None if oldest is None else (now - oldest).total_seconds(),
    }


def decided_by(reviewer: str) -> sa.ColumnElement[bool]:
    """Items `reviewer` has already decided: a second opinion must come from someone else."""
    return sa.exists().where(decisions.c.item_id == items.c.id, decisions.c.reviewer == reviewer)


def iter_decided(engine: Engine, since: datetime | None) -> Iterator[dict[str, Any]]:
    """Decided items (post_id, text, image, image_mime) with their labels and the reviewer's note, in decision
    order, a page at a time.

    One row per item: its latest decision, so a second opinion supersedes the first (one is asked for when
    the first is in doubt) and an export never holds one post twice. Each page is its own short read, so an
    export never holds a transaction open while it writes files.
    """
    latest = sa.select(sa.func.max(decisions.c.id)).group_by(decisions.c.item_id)
    columns = (decisions.c.id, items.c.post_id, items.c.text, items.c.image, items.c.image_mime, decisions.c.labels,
               decisions.c.note)
    query = (sa.select(*columns).join(items, items.c.id == decisions.c.item_id).where(decisions.c.id.in_(latest))
             .order_by(decisions.c.id))
    if since is not None:
        query = query.where(decisions.c.decided_at >= since)
    last_id = 0
    while True:
        with engine.connect() as conn:
            page = conn.execute(query.where(decisions.c.id > last_id).limit(EXPORT_PAGE)).all()
        for row in page:
            yield dict(row._mapping)
        if len(page) < EXPORT_PAGE:
            return
        last_id = page[-1].id


def iter_reviews(engine: Engine) -> Iterator[tuple[sa.Row, list[sa.Row]]]:
    """(item row without its content, its decision rows oldest first; [] while undecided) for every item, by
    item id, a page of items at a time (each page one short read)."""
    columns = [c for c in items.c if c.name not in ("text", "image", "image_mime")]
    last_id = 0
    while True:
        with engine.connect() as conn:
            page = conn.execute(sa.select(*columns).where(items.c.id > last_id).order_by(items.c.id)
                                .limit(EXPORT_PAGE)).all()
            ids = [row.id for row in page]
            rows = conn.execute(sa.select(decisions).where(decisions.c.item_id.in_(ids)).order_by(decisions.c.id)).all()
        by_item: dict[int, list[sa.Row]] = {}
        for row in rows:
            by_item.setdefault(row.item_id, []).append(row)
        for item in page:
            yield item, by_item.get(item.id, [])
        if len(page) < EXPORT_PAGE:
            return
        last_id = page[-1].id
