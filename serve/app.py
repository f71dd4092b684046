"""The production application, built in one place: `build_app(args)` -> a Ray Serve Application.

    build_app(args) = ModerationIngress.options(...).bind(Scorer.options(...).bind(...), settings, ...)

`serve deploy serve/serve_config.yaml` imports it (`import_path: serve.app:build_app`, its `args` are settings),
`moderation serve` runs it through `serve.local.run_service`, and the tests run it exactly that way. The
deployments themselves live in `serve.scorer` and `serve.ingress`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ray.serve.config import BackpressureConfig

from .ingress import ModerationIngress
from .scorer import Scorer
from .service import RETRY_AFTER_S
from .settings import ServeSettings, load_settings

# Bounded queues shed load with 503 + Retry-After (seconds) rather than growing without limit.
BACKPRESSURE = BackpressureConfig(status_code=503, retry_after_s=RETRY_AFTER_S)


def build_app(args: dict[str, Any] | ServeSettings | None = None):
    """Settings (a ServeSettings, or a dict of settings with an optional `settings_path` YAML; env MODERATION_*
    fills the rest) -> the Application: the ingress bound to the Scorer."""
    if isinstance(args, ServeSettings):
        settings = args
    else:
        args = dict(args or {})
        settings = load_settings(args.pop("settings_path", None), **args)
    return compose(settings)


def compose(settings: ServeSettings):
    import torch

    from moderation.moderator import load_run_config
    from moderation.runfiles import resolve_run_dir

    run_config = load_run_config(resolve_run_dir(served_run_dir(settings)))
    severities = {c.name: c.severity for c in run_config.categories}
    gpu = settings.use_gpu == "yes" or (settings.use_gpu == "auto" and torch.cuda.is_available())
    scorer = Scorer.options(
        num_replicas=settings.num_replicas,
        max_ongoing_requests=max(settings.max_ongoing_requests, settings.max_batch_size),
        max_queued_requests=settings.scorer_queue,
        backpressure_config=BACKPRESSURE,
        graceful_shutdown_timeout_s=settings.shutdown_grace_s,
        ray_actor_options={"num_cpus": settings.num_cpus_per_replica, "num_gpus": 1 if gpu else 0},
        user_config={"max_batch_size": settings.max_batch_size, "batch_wait_timeout_s": settings.batch_wait_timeout_s},
    ).bind(settings.run_dir, "cuda" if gpu else "cpu", settings.registry_dir, settings.reload_check_s)
    # The ingress is async and cheap per connection: its Ray limit is kept large so that probes and keyed
    # requests are not refused behind slow or unauthenticated ones (serve.admission answers those itself);
    # the load that costs something is bounded by the Scorer's queue and each request's deadline.
    ingress = ModerationIngress.options(
        num_replicas=settings.ingress_replicas,
        max_ongoing_requests=settings.ingress_max_ongoing_requests,
        max_queued_requests=settings.ingress_max_ongoing_requests,
        backpressure_config=BACKPRESSURE,
        graceful_shutdown_timeout_s=settings.shutdown_grace_s,
    )
    return ingress.bind(scorer, settings, run_config.category_names, severities)


def served_run_dir(settings: ServeSettings) -> Path | str | None:
    """The run directory the service starts with: the registry's current model, or `run_dir` (None: the default)."""
    if not settings.registry_dir:
        return settings.run_dir
    from moderation.registry import Registry

    current = Registry(settings.registry_dir).current_dir()
    if current is None:
        raise ValueError(f"registry_dir {settings.registry_dir}: no current model; promote one first")
    return current
