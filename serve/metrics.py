"""Prometheus metrics of one ingress replica: requests, latency, batch sizes, actions per post and category.

Each replica keeps its own registry and serves it at `/metrics`; Prometheus sums over replicas.
"""

from __future__ import annotations

from moderation.policy import Action


class ServiceMetrics:
    """Prometheus metrics of one ingress replica (requests, latency, batch sizes, actions per category)."""

    def __init__(self):
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter("moderation_requests", "moderation requests answered", registry=self.registry)
        self.posts = Counter("moderation_posts", "posts scored", ["action"], registry=self.registry)
        self.category_actions = Counter("moderation_category_actions", "per-category actions",
                                        ["category", "action"], registry=self.registry)
        self.latency = Histogram("moderation_request_latency_ms", "server-side request latency (ms)",
                                 buckets=(5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000), registry=self.registry)
        self.batch = Histogram("moderation_batch_size", "size of the model batch each post was scored in",
                               buckets=(1, 2, 4, 8, 16, 32, 64, 128), registry=self.registry)

    def observe_request(self, elapsed_ms: float, batch_sizes: list[int], results: list) -> None:
        self.requests.inc()
        self.latency.observe(elapsed_ms)
        for size in batch_sizes:
            self.batch.observe(size)
        for r in results:
            self.posts.labels(Action(r.action).value).inc()
            for category, c in r.categories.items():
                if c.action != Action.ALLOW:
                    self.category_actions.labels(category, Action(c.action).value).inc()

    def render(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)
