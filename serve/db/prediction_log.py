"""`PredictionLog`: one row per served decision, for monitoring (score drift, action mix, live quality).

Owns what is logged and for how long: post id, model version, time, fused scores per category, action,
drivers, reason and review item id always; the post's text and image only when content logging is on, and
those are emptied once older than the retention period (scores and decisions stay). Lives in the review
queue's database (same URL scheme, engine set-up and Alembic migrations: `prediction_log` table, revision
0002), so one migration lock and one backup cover both. Thread-safe (each call checks a connection out of
the pool) and safe across replicas (all coordination is in the database).

    log = open_prediction_log("sqlite:///moderation-review.db", log_content=False, retention_days=30)
    log.record([LoggedPrediction(post_id="p1", model_version="v1", scores={"hate": 0.2}, action="allow")])
    categories, scores = log.scores(model_version="v1", since=datetime.now(timezone.utc) - timedelta(hours=24))
"""

from __future__ import annotations

import logging
import math
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from moderation.policy import Action

from .engine import EngineOwner, create_queue_engine, migrate, write_transaction
from .schema import prediction_log as table

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
ACTIONS = tuple(a.value for a in Action)
PURGE_EVERY = timedelta(hours=1)  # long-lived replicas purge from `record` at most this often


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class LoggedPrediction:
    """One served decision. `text` / `image` are kept only when the log was opened with log_content=True."""

    post_id: str
    model_version: str
    scores: Mapping[str, float]  # {category: fused score}
    action: str  # allow | review | block
    drivers: Sequence[str] = ()
    reason: str | None = None
    review_item_id: int | None = None
    text: str | None = None
    image: bytes | None = None
    image_mime: str | None = None
    created_at: datetime | None = None  # None: the log's clock at record time


@dataclass
class PredictionWindow:
    """Logged decisions of a time window, column-wise: scores[i, j] is row i's score for categories[j]
    (NaN where that row has no score for it, e.g. rows of another model version)."""

    categories: list[str]
    scores: np.ndarray  # (N, C) float64
    actions: list[str] = field(default_factory=list)
    reasons: list[str | None] = field(default_factory=list)
    created_at: list[datetime] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.actions)


def open_prediction_log(url: str, log_content: bool = False, retention_days: int = 30,
                        clock: Clock = utc_now, purge: bool = True) -> PredictionLog:
    """Open (creating or migrating the shared schema as needed) the log at `url`, then purge expired content.

    `purge=False` for readers (`moderation monitor`): they do not know the service's retention period, so
    purging with their default could empty content the service is configured to keep longer. It also stops
    the hourly purge `record` otherwise runs.
    """
    _check_retention(retention_days)
    engine = create_queue_engine(url)
    migrate(engine)
    _relax_durability(engine)
    prediction_log = PredictionLog(engine, log_content=log_content, retention_days=retention_days, clock=clock,
                                   auto_purge=purge)
    if purge:
        prediction_log.purge_expired()
    return prediction_log


def _check_retention(retention_days: int) -> None:
    if isinstance(retention_days, bool) or not isinstance(retention_days, int) or retention_days < 1:
        raise ValueError(f"retention_days = {retention_days!r}: expected an integer number of days >= 1")


def _relax_durability(engine: Engine) -> None:
    """SQLite connections of this engine commit without an fsync each (WAL + synchronous=NORMAL).

    Why: the log is written on every request, and a row lost to a power cut (never to a process crash)
    changes no statistic that matters; the queue keeps FULL for its own engine, where a row is a person's
    work. PostgreSQL gets the same trade per transaction in `_write` (synchronous_commit off).
    """
    if engine.dialect.name != "sqlite":
        return

    @sa.event.listens_for(engine, "connect")
    def _normal_sync(dbapi_connection, _record) -> None:  # runs after the queue's listener, which set FULL
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()


class PredictionLog(EngineOwner):
    """The prediction log over one database; see `open_prediction_log` (which also migrates and purges)."""

    _what = "prediction log"

    def __init__(self, engine: Engine, log_content: bool = False, retention_days: int = 30,
                 clock: Clock = utc_now, auto_purge: bool = True) -> None:
        _check_retention(retention_days)
        self._engine = engine
        self.log_content = bool(log_content)
        self.retention = timedelta(days=retention_days)
        self._clock = clock
        self._auto_purge = auto_purge  # purge from `record`, at most every PURGE_EVERY
        self._purge_lock = threading.Lock()
        self._last_purge: datetime | None = None

    # -- writing ---------------------------------------------------------------------------------------

    def record(self, entries: Sequence[LoggedPrediction]) -> int:
        """Insert `entries` in one transaction (all or none); return how many. Content is dropped unless enabled."""
        if not entries:
            return 0
        now = self._now()
        rows = [self._row(entry, now) for entry in entries]
        with self._write() as conn:
            conn.execute(table.insert(), rows)
        if self._auto_purge:
            self._purge_if_due(now)
        return len(rows)

    def _row(self, entry: LoggedPrediction, now: datetime) -> dict:
        if entry.action not in ACTIONS:
            raise ValueError(f"post {entry.post_id!r}: action {entry.action!r} is not one of {list(ACTIONS)}")
        scores = {}
        for category, score in entry.scores.items():
            if not isinstance(score, (int, float)) or isinstance(score, bool) or not math.isfinite(score):
                raise ValueError(f"post {entry.post_id!r}: score for {category!r} is {score!r}, not a finite number")
            scores[str(category)] = float(score)
        keep = self.log_content
        return dict(
            post_id=entry.post_id, model_version=entry.model_version, created_at=entry.created_at or now,
            scores=scores, action=entry.action, drivers=list(entry.drivers), reason=entry.reason,
            review_item_id=entry.review_item_id, text=entry.text if keep else None,
            image=entry.image if keep else None, image_mime=entry.image_mime if keep and entry.image else None,
        )

    def purge_expired(self, now: datetime | None = None) -> int:
        """Empty text/image/mime of rows older than the retention period; return how many rows were emptied.

        Runs whatever `log_content` is now, so content logged under an earlier setting still expires.
        """
        now = now or self._now()
        cutoff = now - self.retention
        has_content = sa.or_(table.c.text.is_not(None), table.c.image.is_not(None), table.c.image_mime.is_not(None))
        statement = (table.update().where(table.c.created_at < cutoff, has_content)
                     .values(text=None, image=None, image_mime=None))
        with self._write() as conn:
            purged = conn.execute(statement).rowcount
        with self._purge_lock:
            self._last_purge = now
        if purged:
            log.info("prediction log: emptied the content of %d rows older than %s", purged, cutoff.isoformat())
        return purged

    def _purge_if_due(self, now: datetime) -> None:
        with self._purge_lock:
            due = self._last_purge is None or now - self._last_purge >= PURGE_EVERY
            if due:
                self._last_purge = now  # claimed here, so concurrent recorders do not all purge at once
        if due:
            self.purge_expired(now)

    def _write(self):
        return _relaxed_write(self._engine)

    # -- reading ---------------------------------------------------------------------------------------

    def window(self, model_version: str | None = None, since: datetime | None = None,
               until: datetime | None = None, limit: int | None = None) -> PredictionWindow:
        """Rows with since <= created_at < until (of one model version if given), oldest first.

        `limit` keeps the newest `limit` rows (a bound on memory for busy services).
        """
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise ValueError(f"limit = {limit!r}: expected an integer >= 1 or None")
        columns = (table.c.id, table.c.scores, table.c.action, table.c.reason, table.c.created_at)
        query = sa.select(*columns).where(*self._filters(model_version, since, until))
        query = query.order_by(table.c.created_at.desc(), table.c.id.desc()).limit(limit)
        with self._engine.connect() as conn:
            rows = conn.execute(query).all()[::-1]
        categories = list(dict.fromkeys(c for row in rows for c in row.scores))
        index = {c: j for j, c in enumerate(categories)}
        scores = np.full((len(rows), len(categories)), np.nan)
        for i, row in enumerate(rows):
            for c, s in row.scores.items():
                scores[i, index[c]] = s
        return PredictionWindow(categories, scores, [r.action for r in rows], [r.reason for r in rows],
                                [r.created_at for r in rows])

    def scores(self, model_version: str | None = None, since: datetime | None = None,
               until: datetime | None = None) -> tuple[list[str], np.ndarray]:
        """(categories, (N, C) fused scores) of the rows in the window; see `window`."""
        window = self.window(model_version, since, until)
        return window.categories, window.scores

    def count(self, model_version: str | None = None, since: datetime | None = None,
              until: datetime | None = None) -> int:
        query = sa.select(sa.func.count()).select_from(table).where(*self._filters(model_version, since, until))
        with self._engine.connect() as conn:
            return conn.execute(query).scalar_one()

    def versions(self, since: datetime | None = None, until: datetime | None = None) -> dict[str, int]:
        """{model_version: rows} in the window, most rows first."""
        query = (sa.select(table.c.model_version, sa.func.count()).where(*self._filters(None, since, until))
                 .group_by(table.c.model_version))
        with self._engine.connect() as conn:
            return dict(Counter(dict(conn.execute(query).all())).most_common())

    def content(self, post_id: str) -> list[dict]:
        """The logged rows of one post with their content (text, image, image_mime; None once purged)."""
        query = sa.select(table).where(table.c.post_id == post_id).order_by(table.c.id)
        with self._engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(query)]

    @staticmethod
    def _filters(model_version: str | None, since: datetime | None, until: datetime | None) -> list:
        for name, value in (("since", since), ("until", until)):
            if value is not None and value.tzinfo is None:
                raise ValueError(f"{name} = {value!r} is naive; pass a timezone-aware datetime")
        filters = []
        if model_version is not None:
            filters.append(table.c.model_version == model_version)
        if since is not None:
            filters.append(table.c.created_at >= since)
        if until is not None:
            filters.append(table.c.created_at < until)
        return filters


@contextmanager
def _relaxed_write(engine: Engine) -> Iterator[Connection]:
    """A write transaction (BEGIN IMMEDIATE on SQLite) whose PostgreSQL commit does not wait for the WAL flush.

    Why: see `_relax_durability`. A crash loses at most the last fraction of a second of log rows and never
    corrupts anything; the queue's own transactions keep synchronous commits.
    """
    with write_transaction(engine) as conn:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("SET LOCAL synchronous_commit TO off")  # overrides write_transaction's "on"
        yield conn
