"""`moderation serve`: run the moderation service locally (Ray Serve, batched; review queue and page)."""

from __future__ import annotations

import sys

from .common import quiet_libraries


def add_parser(sub, parents, argv) -> None:
    p = sub.add_parser("serve", parents=parents,
                       help="run the moderation service locally (Ray Serve, batched; review queue and page)")
    p.add_argument("--config", help="serve settings YAML (check it with `moderation check-config`); "
                                    "MODERATION_* environment variables also work")
    p.add_argument("--run", help="run directory to serve (default: the shipped default model)")
    p.add_argument("--registry", help="serve the registry's current model and take up promotions without a restart")
    p.add_argument("--queue", help="review queue URL: sqlite:///path.db (default) or postgresql://...")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument("--num-cpus", type=int, help="CPUs for local Ray (default: all)")
    p.add_argument("--dev", action="store_true", help="local development: switch API-key checks OFF (announced)")
    p.set_defaults(handler=run)


def run(args) -> int:
    quiet_libraries()
    from serve.local import run_service

    overrides = {"run_dir": args.run, "registry_dir": args.registry, "queue_url": args.queue, "host": args.host,
                 "port": args.port}
    if args.dev:
        overrides["auth"] = "disabled"
        print("WARNING: --dev: API keys are NOT checked; every response carries X-Auth-Disabled: true", file=sys.stderr)
    run_service(args.config, {k: v for k, v in overrides.items() if v is not None}, args.num_cpus, _ready)
    return 0


def _ready(settings) -> None:
    base = f"http://{settings.host}:{settings.port}"
    print(f"moderation service ready: {base}/v1/moderate  (review page {base}/review, API docs {base}/docs)")
    model = settings.registry_dir or settings.run_dir or "shipped default model"
    print(f"review queue: {settings.queue_url}; model: {model}")
