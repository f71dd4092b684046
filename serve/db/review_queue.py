"""`ReviewQueue`: the durable human-review queue, one API over SQLite and PostgreSQL.

Owns the queue's behaviour: idempotent enqueue, claims with leases, decisions (and second opinions), the
audit trail, export.
Every state change and its audit event commit in one transaction, so the audit log is complete.
Thread-safe (each call checks a connection out of the engine's pool) and safe across processes and
replicas (exclusivity comes from the database, never from in-process locks). Open one queue per process,
after any fork. Times come from an injectable clock; replicas' clocks are assumed NTP-synced (leases are
minutes long, so seconds of skew do not matter).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from moderation.policy import Sampling, Thresholds

from .engine import EngineOwner, create_queue_engine, migrate, write_transaction
from .export import write_generic_jsonl
from .priority import as_thresholds, compute_priority
from .queries import QUEUE_ORDER, ClaimFilter, decided_by, iter_decided, iter_reviews, open_for_claim, queue_stats
from .records import (
    MODALITIES,
    REVIEW_ACTIONS,
    AuditEvent,
    ClaimError,
    Decision,
    Item,
    ItemNotFound,
    NewItem,
    QueueUnavailable,
    Review,
    check_labels,
)
from .schema import VERSION_TABLE, audit_log, decisions, items

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def open_queue(
    url: str,
    categories: Sequence[str] | None = None,
    severities: Mapping[str, float] | None = None,
    clock: Clock = utc_now,
) -> ReviewQueue:
    """Open (creating or migrating as needed) the queue at `url`: `sqlite:///path.db` or `postgresql://...`.

    `categories`: the configured category names; labels and scores are checked against them. When None,
    a decision's labels are checked against the categories the item was scored on.
    `severities`: {category: weight} for the priority (config `categories[].severity`; default 1.0 each).
    """
    engine = create_queue_engine(url)
    migrate(engine)
    return ReviewQueue(engine, categories=categories, severities=severities, clock=clock)


class ReviewQueue(EngineOwner):
    """The review queue over one database; see `open_queue` (which also applies migrations)."""

    _what = "queue"

    def __init__(
        self,
        engine: Engine,
        categories: Sequence[str] | None = None,
        severities: Mapping[str, float] | None = None,
        clock: Clock = utc_now,
    ) -> None:
        self._engine = engine
        self._categories = list(categories) if categories is not None else None
        self._severities = dict(severities or {})
        self._clock = clock
        self._file = _sqlite_file(engine)  # (path, identity) of a SQLite queue, checked before every write
        unknown = sorted(set(self._severities) - set(self._categories or self._severities))
        if unknown:
            raise ValueError(f"severities for unknown categories {unknown} (configured: {self._categories})")

    # -- enqueue ---------------------------------------------------------------------------------------

    def enqueue(
        self,
        item: NewItem,
        thresholds: Thresholds | Mapping[str, Mapping[str, float]],
        severities: Mapping[str, float] | None = None,
    ) -> tuple[int, bool]:
        """Add `item` unless its post id is already queued; return (item id, whether it was created).

        A repeat enqueue (a retried request, a re-scored post) returns the existing item untouched: its
        scores, status and any decision stay as they are. `thresholds` (moderation.policy.Thresholds, or a plain
        {category: {"review", "block"}}) are those of the model version that scored it; `severities` default to
        the queue's. See `.priority`.
        """
        unknown = sorted(set(item.scores) - set(self._categories or item.scores))
        if unknown:
            raise ValueError(
                f"post {item.post_id!r}: scores for unknown categories {unknown} (configured: {self._categories})"
            )
        self.check_file()
        priority = compute_priority(item.scores, as_thresholds(thresholds),
                                    self._severities if severities is None else severities)
        now = self._now()
        values = _new_row(item, priority, now)
        insert = postgresql.insert if self._engine.dialect.name == "postgresql" else sqlite.insert
        # ON CONFLICT DO NOTHING: two replicas enqueuing the same post at once both succeed; one row results.
        statement = insert(items).values(**values).on_conflict_do_nothing(index_elements=["post_id"])
        with write_transaction(self._engine) as conn:
            item_id = conn.execute(statement.returning(items.c.id)).scalar()  # None: already queued
            created = item_id is not None
            if not created:
                item_id = conn.execute(sa.select(items.c.id).where(items.c.post_id == item.post_id)).scalar_one()
            event = "enqueued" if created else "enqueue_duplicate"
            details = dict(reason=item.reason, model_action=item.action, model_version=item.model_version)
            _audit(conn, event, item_id, "system", now, priority=priority, **details)
        log.debug("%s post %r as item %d (priority %.3f)", event, item.post_id, item_id, priority)
        return item_id, created

    # -- health ----------------------------------------------------------------------------------------

    def check_file(self) -> None:
        """Raise QueueUnavailable if the SQLite file this queue opened was removed or replaced since.

        SQLite would otherwise carry on: open connections write to the unlinked file and new ones create an
        empty file, so every acknowledged item would be lost on restart.
        """
        if self._file is None:
            return
        path, identity = self._file
        try:
            stat = path.stat()
        except OSError:
            raise QueueUnavailable(f"review queue file {path} has disappeared while serving; restore it or "
                                   "restart the service (it is not recreated, so no item is silently lost)") from None
        if (stat.st_dev, stat.st_ino) != identity:
            raise QueueUnavailable(f"review queue file {path} was replaced while serving; restart the service")

    def check(self) -> None:
        """Raise QueueUnavailable unless the queue can be written and read back (the readiness probe)."""
        self.check_file()
        try:
            with write_transaction(self._engine) as conn:
                version = conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar_one()
                conn.execute(sa.text(f"UPDATE {VERSION_TABLE} SET version_num = :v"), {"v": version})
                again = conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar_one()
        except sa.exc.SQLAlchemyError as exc:
            raise QueueUnavailable(f"review queue cannot be written: {type(exc.orig or exc).__name__}: "
                                   f"{exc.orig or exc}") from None
        if again != version:
            raise QueueUnavailable(f"review queue read back {again!r} after writing {version!r}")

    # -- claims ----------------------------------------------------------------------------------------

    def claim(self, reviewer: str, lease_seconds: float, n: int = 1, only: ClaimFilter | None = None) -> list[Item]:
        """Claim up to `n` open items for `reviewer`, highest priority first, then oldest, skipping items
        `reviewer` has already decided (re-opened for a second opinion, see `request_second_review`);
        `only`: just the items that match (by category, reason, enqueue date; see `ClaimFilter`).

        No two reviewers ever hold the same item: PostgreSQL locks the chosen rows with FOR UPDATE SKIP
        LOCKED (concurrent claimers take the next rows instead of waiting); SQLite runs the whole claim in
        a BEGIN IMMEDIATE transaction, one claimer at a time. The claim lasts `lease_seconds`; after that
        the item is open again (see `extend_lease`).
        """
        self.check_file()
        _check_reviewer(reviewer)
        _check_seconds(lease_seconds)
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"n = {n!r}: expected an integer >= 1")
        now = self._now()
        expires = now + timedelta(seconds=lease_seconds)
        query = (
            sa.select(items.c.id, items.c.status, items.c.claim_owner, items.c.lease_expires_at)
            .where(open_for_claim(now), ~decided_by(reviewer), (only or ClaimFilter()).condition())
            .order_by(*QUEUE_ORDER)
            .limit(n)
            .with_for_update(skip_locked=True)  # SQLite compiles no FOR UPDATE; BEGIN IMMEDIATE covers it
        )
        with write_transaction(self._engine) as conn:
            rows = conn.execute(query).all()
            if not rows:
                return []
            ids = [row.id for row in rows]
            for row in rows:
                if row.status == "claimed":
                    details = dict(previous_owner=row.claim_owner, lease_expired_at=row.lease_expires_at.isoformat())
                    _audit(conn, "lease_expired", row.id, "system", now, **details)
            owned = dict(status="claimed", claim_owner=reviewer, lease_expires_at=expires)
            conn.execute(items.update().where(items.c.id.in_(ids)).values(**owned))
            for item_id in ids:
                _audit(conn, "claimed", item_id, reviewer, now, lease_expires_at=expires.isoformat())
            claimed = {row.id: _item(row) for row in conn.execute(sa.select(items).where(items.c.id.in_(ids)))}
        log.debug("%r claimed items %s until %s", reviewer, ids, expires.isoformat())
        return [claimed[i] for i in ids]

    def release(self, item_id: int, reviewer: str) -> Item:
        """Give a claimed item back to the queue (only its claimer can, even just after the lease ran out)."""
        _check_id(item_id)
        now = self._now()
        with write_transaction(self._engine) as conn:
            _held_claim(conn, item_id, reviewer, now, allow_expired=True)
            open_again = dict(status="pending", claim_owner=None, lease_expires_at=None)
            conn.execute(items.update().where(items.c.id == item_id).values(**open_again))
            _audit(conn, "released", item_id, reviewer, now)
            return _item(conn.execute(sa.select(items).where(items.c.id == item_id)).one())

    def extend_lease(self, item_id: int, reviewer: str, lease_seconds: float) -> Item:
        """Move a live claim's expiry to now + `lease_seconds` (only its claimer, before it expires)."""
        _check_id(item_id)
        _check_seconds(lease_seconds)
        now = self._now()
        expires = now + timedelta(seconds=lease_seconds)
        with write_transaction(self._engine) as conn:
            _held_claim(conn, item_id, reviewer, now)
            conn.execute(items.update().where(items.c.id == item_id).values(lease_expires_at=expires))
            _audit(conn, "lease_extended", item_id, reviewer, now, lease_expires_at=expires.isoformat())
            return _item(conn.execute(sa.select(items).where(items.c.id == item_id)).one())

    # -- decisions -------------------------------------------------------------------------------------

    def decide(self, item_id: int, reviewer: str, action: str, labels: Mapping[str, int], note: str = "") -> Decision:
        """Record `reviewer`'s decision on an item they hold a live claim on; durable once this returns.

        `labels` holds only the categories the reviewer judged ({category: 0|1}); the rest stay unknown.
        The decision, the item's new status and the audit event commit together or not at all.
        """
        _check_id(item_id)
        self.check_file()
        if "\x00" in note:  # PostgreSQL's text cannot hold it; refused here on every engine alike
            raise ValueError("note contains a NUL character (U+0000), which is not allowed")
        if action not in REVIEW_ACTIONS:
            raise ValueError(f"action {action!r} is not one of {list(REVIEW_ACTIONS)}")
        if not isinstance(note, str):
            raise ValueError(f"note must be a string, got {type(note).__name__}")
        clean = check_labels(labels, self._categories) if self._categories is not None else None
        now = self._now()
        with write_transaction(self._engine) as conn:
            row = _held_claim(conn, item_id, reviewer, now)
            if clean is None:
                clean = check_labels(labels, list(row.scores))
            decision = dict(item_id=item_id, reviewer=reviewer, action=action, labels=clean, note=note, decided_at=now)
            decision_id = conn.execute(decisions.insert().values(**decision)).inserted_primary_key[0]
            closed = dict(status="decided", claim_owner=None, lease_expires_at=None)
            conn.execute(items.update().where(items.c.id == item_id).values(**closed))
            _audit(
                conn, "decided", item_id, reviewer, now, decision_id=decision_id, action=action, labels=clean, note=note
            )
        log.info("item %d decided %s by %r (labels %s)", item_id, action, reviewer, clean)
        return Decision(id=decision_id, **decision)

    def request_second_review(self, item_id: int, requested_by: str, note: str = "") -> Item:
        """Re-open a decided item so that a different reviewer decides it too; return the re-opened item.

        The first decision stays as it is; the item goes back to the queue at its priority, and `claim` never
        serves it to anyone who already decided it. Both decisions then count for inter-reviewer agreement;
        in exports the latest decision supersedes the earlier one. Raises ClaimError unless the item is decided.
        """
        _check_id(item_id)
        _check_reviewer(requested_by)
        if not isinstance(note, str):
            raise ValueError(f"note must be a string, got {type(note).__name__}")
        now = self._now()
        with write_transaction(self._engine) as conn:
            row = conn.execute(sa.select(items).where(items.c.id == item_id).with_for_update()).first()
            if row is None:
                raise ItemNotFound(f"no review item with id {item_id!r}")
            if row.status != "decided":
                raise ClaimError(f"item {item_id} is {row.status}, not decided; a second review follows a decision")
            conn.execute(items.update().where(items.c.id == item_id).values(status="pending"))
            _audit(conn, "second_review_requested", item_id, requested_by, now, note=note)
            reopened = _item(conn.execute(sa.select(items).where(items.c.id == item_id)).one())
        log.info("item %d re-opened for a second review by %r", item_id, requested_by)
        return reopened

    def undo_decision(self, item_id: int, reviewer: str, window_seconds: float, lease_seconds: float) -> Item:
        """Take back `reviewer`'s decision on an item within `window_seconds` of making it (a slip of the
        key): the decision row is deleted (the audit log keeps it, as `decision_undone`) and the item is
        claimed by `reviewer` again for `lease_seconds`, to be decided anew. Raises ClaimError when the item
        is not decided, its latest decision is someone else's, or the window has passed.
        """
        _check_id(item_id)
        _check_reviewer(reviewer)
        _check_seconds(lease_seconds)
        self.check_file()
        now = self._now()
        with write_transaction(self._engine) as conn:
            row = conn.execute(sa.select(items).where(items.c.id == item_id).with_for_update()).first()
            if row is None:
                raise ItemNotFound(f"no review item with id {item_id!r}")
            last = conn.execute(sa.select(decisions).where(decisions.c.item_id == item_id)
                                .order_by(decisions.c.id.desc()).limit(1)).first()
            if row.status != "decided" or last is None:
                raise ClaimError(f"item {item_id} is {row.status}, not decided: there is no decision to undo")
            if last.reviewer != reviewer:
                raise ClaimError(f"item {item_id}: its latest decision was made by {last.reviewer!r}, not by "
                                 f"{reviewer!r}; only its maker may undo it")
            age_s = (now - last.decided_at).total_seconds()
            if age_s > window_seconds:
                raise ClaimError(f"item {item_id} was decided {age_s:.0f} s ago; a decision can be undone within "
                                 f"{window_seconds:g} s (ask for a second review instead)")
            conn.execute(decisions.delete().where(decisions.c.id == last.id))
            conn.execute(items.update().where(items.c.id == item_id).values(
                status="claimed", claim_owner=reviewer, lease_expires_at=now + timedelta(seconds=lease_seconds)))
            _audit(conn, "decision_undone", item_id, reviewer, now, decision_id=last.id, action=last.action,
                   labels=last.labels, note=last.note)
            reclaimed = _item(conn.execute(sa.select(items).where(items.c.id == item_id)).one())
        log.info("item %d: %r undid decision %d", item_id, reviewer, last.id)
        return reclaimed

    # -- reading ---------------------------------------------------------------------------------------

    def get(self, item_id: int) -> Item:
        _check_id(item_id)
        with self._engine.connect() as conn:
            row = conn.execute(sa.select(items).where(items.c.id == item_id)).first()
        if row is None:
            raise ItemNotFound(f"no review item with id {item_id!r}")
        return _item(row)

    def decision(self, item_id: int) -> Decision | None:
        """The (first) decision on an item, or None while it is undecided; see `decisions_for` for all of them."""
        decided = self.decisions_for(item_id)
        return decided[0] if decided else None

    def decisions_for(self, item_id: int) -> list[Decision]:
        """Every decision on an item, oldest first: one, or more after `request_second_review`."""
        _check_id(item_id)
        query = sa.select(decisions).where(decisions.c.item_id == item_id).order_by(decisions.c.id)
        with self._engine.connect() as conn:
            return [Decision(**row._mapping) for row in conn.execute(query)]

    def reviews(self) -> Iterator[Review]:
        """Every item as a `Review` (no post content) with its decisions (none while undecided), by item id,
        streamed a page at a time.

        What live-quality estimates read (eval.live_quality): the model's scores, action and reason beside the
        reviewers' decisions; undecided items count too, so estimates can scale up from the decided share.
        """
        for item, rows in iter_reviews(self._engine):
            yield Review(item_id=item.id, post_id=item.post_id, scores=item.scores, action=item.action,
                         model_version=item.model_version, reason=item.reason, created_at=item.created_at,
                         decisions=tuple(Decision(**row._mapping) for row in rows),
                         sampling=_sampling(item.sampling))

    def open_versions(self) -> list[str]:
        """The model versions of the open items (what a category filter needs thresholds for)."""
        query = sa.select(items.c.model_version).where(open_for_claim(self._now())).distinct()
        with self._engine.connect() as conn:
            return [row[0] for row in conn.execute(query)]

    def list_pending(self, limit: int = 50, offset: int = 0) -> list[Item]:
        """Open items (pending, or claimed with an expired lease) in the order `claim` would serve them."""
        if not (0 <= limit <= MAX_INT64 and 0 <= offset <= MAX_INT64):
            raise ValueError(f"limit = {limit!r}, offset = {offset!r}: expected integers from 0 to 2^63-1")
        query = sa.select(items).where(open_for_claim(self._now())).order_by(*QUEUE_ORDER)
        with self._engine.connect() as conn:
            return [_item(row) for row in conn.execute(query.limit(limit).offset(offset))]

    def stats(self) -> dict[str, Any]:
        """{pending, claimed, decided, by_reason, by_action, oldest_pending_age_s}; see `queries.queue_stats`."""
        now = self._now()
        with self._engine.connect() as conn:
            return queue_stats(conn, now)

    def audit(self, item_id: int | None = None, limit: int | None = None) -> list[AuditEvent]:
        """Audit events, oldest first: of one item, or of the whole queue when `item_id` is None."""
        if limit is not None and not 0 <= limit <= MAX_INT64:
            raise ValueError(f"limit = {limit!r}: expected an integer from 0 to 2^63-1")
        query = sa.select(audit_log).order_by(audit_log.c.id).limit(limit)
        if item_id is not None:
            _check_id(item_id)
            query = query.where(audit_log.c.item_id == item_id)
        with self._engine.connect() as conn:
            return [AuditEvent(**row._mapping) for row in conn.execute(query)]

    def export_decisions(self, out_path: Path, since: datetime | None = None) -> int:
        """Write decisions (made at or after `since`, if given) as generic JSONL training rows; return the count.

        Images go to `images/` beside `out_path`, referenced relative to it (see `.export`).
        """
        if since is not None and since.tzinfo is None:
            raise ValueError(f"since = {since!r} is naive; pass a timezone-aware datetime")
        out_path = Path(out_path)
        written = write_generic_jsonl(iter_decided(self._engine, since), out_path)
        with write_transaction(self._engine) as conn:
            details = dict(path=str(out_path.resolve()), rows=written, since=since and since.isoformat())
            _audit(conn, "exported", None, "export", self._now(), **details)
        log.info("exported %d reviewed rows to %s", written, out_path)
        return written


def _new_row(item: NewItem, priority: float, now: datetime) -> dict[str, Any]:
    """The items row of a newly enqueued post; every category's scores hold all three modalities (None = absent)."""
    return dict(
        post_id=item.post_id,
        text=item.text,
        image=item.image,
        image_mime=item.image_mime,
        scores={c: {m: entry.get(m) for m in MODALITIES} for c, entry in item.scores.items()},
        action=item.action,
        model_version=item.model_version,
        priority=priority,
        status="pending",
        reason=item.reason,
        created_at=now,
        sampling=None if item.sampling is None else item.sampling.model_dump(mode="json"),
        ocr_text=item.ocr_text,
    )


def _held_claim(conn: Connection, item_id: int, reviewer: str, now: datetime, allow_expired: bool = False) -> sa.Row:
    """The item's row, locked, if `reviewer` holds its claim; otherwise a ClaimError that says why not."""
    row = conn.execute(sa.select(items).where(items.c.id == item_id).with_for_update()).first()
    if row is None:
        raise ItemNotFound(f"no review item with id {item_id!r}")
    if row.status == "decided":
        raise ClaimError(f"item {item_id} is already decided; a decision is final")
    if row.status == "pending":
        raise ClaimError(f"item {item_id} is not claimed by anyone; {reviewer!r} must claim it first")
    until = row.lease_expires_at.isoformat()
    if row.claim_owner != reviewer:
        raise ClaimError(f"item {item_id} is claimed by {row.claim_owner!r} (lease until {until}), not by {reviewer!r}")
    if row.lease_expires_at <= now and not allow_expired:
        raise ClaimError(f"{reviewer!r}'s lease on item {item_id} expired at {until}; claim it again")
    return row


def _audit(conn: Connection, event: str, item_id: int | None, actor: str, at: datetime, **details: Any) -> None:
    conn.execute(audit_log.insert().values(event=event, item_id=item_id, actor=actor, at=at, details=details))


def _item(row: sa.Row) -> Item:
    return Item(**{**row._mapping, "sampling": _sampling(row.sampling)})


def _sampling(stored: dict | None) -> Sampling | None:
    """The stored rates as `Sampling`; None for items enqueued before they were stored (migration 0004)."""
    return None if stored is None else Sampling.model_validate(stored)


def _sqlite_file(engine: Engine) -> tuple[Path, tuple[int, int]] | None:
    if engine.dialect.name != "sqlite":
        return None
    path = Path(engine.url.database).resolve()
    stat = path.stat()
    return path, (stat.st_dev, stat.st_ino)


MAX_INT64 = 2**63 - 1  # the largest id or offset the databases store (SQLite raises OverflowError beyond it)


def _check_id(item_id: int) -> None:
    if not 0 <= item_id <= MAX_INT64:
        raise ValueError(f"item id {item_id!r}: expected an integer from 0 to 2^63-1")


def _check_reviewer(name: str) -> None:
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"reviewer must be a non-empty string, got {name!r}")


def _check_seconds(value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ValueError(f"lease_seconds = {value!r}: expected a number of seconds > 0")
