"""Prometheus metrics of one ingress replica, named by Prometheus' conventions (base units, `_total`, `_info`).

    moderation_http_requests_total{route, method, status}   every answer, errors included (counted by a
                                                            middleware, so 401/413/422/5xx count too)
    moderation_request_duration_seconds                     moderation requests, server side (histogram)
    moderation_batch_size                                   model batch each post was scored in (histogram)
    moderation_posts_total{action}, moderation_category_actions_total{category, action}
    moderation_review_queue_pending / _claimed / _oldest_pending_age_seconds   (gauges)
    moderation_model_info{model_version}                    1 for the model this replica serves

Each replica keeps its own registry and serves it at `/metrics`; Prometheus sums over replicas. The queue
gauges are read from the review queue's stats when `/metrics` is scraped, off the event loop and at most once
per `QUEUE_STATS_MAX_AGE_S`, so frequent scrapes cost the database nothing extra. `route` is the route's
template (`/v1/review/items/{item_id}`), never the raw path, so the label's values stay few.
`docs/prometheus-alerts.yaml` holds example alert rules over these names.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from moderation.policy import Action

log = logging.getLogger(__name__)

QUEUE_STATS_MAX_AGE_S = 10.0  # a scrape newer than this reuses the last queue stats
METRICS_PATH = "/metrics"
DURATION_BUCKETS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)


class ServiceMetrics:
    """Prometheus metrics of one ingress replica (see the module docstring for the names).

    `queue_stats`: a callable returning the review queue's stats (`ReviewQueue.stats()`), for the gauges.
    """

    def __init__(self, queue_stats: Callable[[], dict[str, Any]] | None = None):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

        r = self.registry = CollectorRegistry()
        self.http_requests = Counter("moderation_http_requests", "HTTP requests answered, by route template, "
                                     "method and status code (errors included)", ["route", "method", "status"],
                                     registry=r)
        self.posts = Counter("moderation_posts", "posts decided, by action", ["action"], registry=r)
        self.category_actions = Counter("moderation_category_actions", "per-category actions other than allow",
                                        ["category", "action"], registry=r)
        self.duration = Histogram("moderation_request_duration_seconds", "server-side duration of a moderation "
                                  "request (any API), in seconds", buckets=DURATION_BUCKETS, registry=r)
        self.batch = Histogram("moderation_batch_size", "size of the model batch each post was scored in",
                               buckets=(1, 2, 4, 8, 16, 32, 64, 128), registry=r)
        self.queue_pending = Gauge("moderation_review_queue_pending", "review items waiting for a reviewer "
                                   "(expired claims included)", registry=r)
        self.queue_claimed = Gauge("moderation_review_queue_claimed", "review items under a live claim", registry=r)
        self.queue_oldest = Gauge("moderation_review_queue_oldest_pending_age_seconds", "age of the oldest "
                                  "waiting review item in seconds (0 when none waits)", registry=r)
        self.model = Info("moderation_model", "the model version this replica serves", registry=r)
        self._queue_stats = queue_stats
        self._queue_read_at: float | None = None

    def observe_request(self, elapsed_s: float, batch_sizes: list[int], results: list) -> None:
        self.duration.observe(elapsed_s)
        for size in batch_sizes:
            self.batch.observe(size)
        for r in results:
            self.posts.labels(Action(r.action).value).inc()
            for category, c in r.categories.items():
                if c.action != Action.ALLOW:
                    self.category_actions.labels(category, Action(c.action).value).inc()

    def observe_http(self, route: str, method: str, status: int) -> None:
        self.http_requests.labels(route, method, str(status)).inc()

    def set_model_version(self, version: str) -> None:
        self.model.info({"model_version": version})

    def refresh_queue(self) -> None:
        """Read the review queue's stats into the gauges, unless they were read in the last
        QUEUE_STATS_MAX_AGE_S. A database error is logged and leaves the gauges as they were: a scrape must
        not fail because the queue is briefly unreachable (`/readyz` reports that)."""
        now = time.monotonic()
        if self._queue_stats is None or (self._queue_read_at is not None
                                         and now - self._queue_read_at < QUEUE_STATS_MAX_AGE_S):
            return
        self._queue_read_at = now
        try:
            stats = self._queue_stats()
        except Exception:
            log.exception("could not read the review queue's stats for /metrics")
            return
        self.queue_pending.set(stats["pending"])
        self.queue_claimed.set(stats["claimed"])
        self.queue_oldest.set(stats["oldest_pending_age_s"] or 0.0)

    def render(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


def route_template(scope, static_paths: frozenset[str] = frozenset()) -> str:
    """The matched route's template (FastAPI's router puts the route in the scope); for a request answered
    before routing (e.g. /healthz or a 401 from serve.admission), its path when that is one of the app's
    parameterless routes; otherwise "unmatched" (a 404, or an unknown path refused early)."""
    route = getattr(scope.get("route"), "path", None)
    if route:
        return route
    return scope.get("path") if scope.get("path") in static_paths else "unmatched"


class CountRequests:
    """Pure ASGI middleware: counts every answer by route template, method and status, errors included (an
    exception that escapes counts as 500), and refreshes the queue gauges, in a thread (a database read),
    before `/metrics` renders. Added last, it is the outermost middleware, so answers given by the ones
    inside it (401 before the body, 408, 503 while draining) are counted too."""

    def __init__(self, app, metrics_of: Callable[[], ServiceMetrics], routes: Callable[[], list]):
        self.app, self.metrics_of, self.routes = app, metrics_of, routes
        self._static_paths: frozenset[str] | None = None

    def static_paths(self) -> frozenset[str]:
        if self._static_paths is None:  # read on first use: every route is registered by then
            self._static_paths = frozenset(p for r in self.routes() if "{" not in (p := getattr(r, "path", "{")))
        return self._static_paths

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        metrics = self.metrics_of()
        if scope.get("path") == METRICS_PATH:
            await asyncio.to_thread(metrics.refresh_queue)
        status = 500

        async def send_and_note(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            metrics.observe_http(route_template(scope, self.static_paths()), scope.get("method", "GET"), status)


def instrument(app, metrics_of: Callable[[], ServiceMetrics]) -> None:
    """Count every answer of `app` (see CountRequests); `metrics_of()` gives the replica's ServiceMetrics.
    Call it after the app's other middleware is added, so that it wraps them."""
    app.add_middleware(CountRequests, metrics_of=metrics_of, routes=lambda: app.routes)
