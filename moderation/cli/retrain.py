"""`moderation retrain`: merge review exports, train a candidate, gate it against the current model, promote."""

from __future__ import annotations

from .common import add_overrides, add_quiet, quiet_libraries


def add_parser(sub, parents, argv) -> None:
    p = sub.add_parser("retrain", parents=parents,
                       help="merge review exports, train a candidate, gate it against the current model, promote")
    p.add_argument("config", help="the base training config")
    add_overrides(p)
    p.add_argument("--reviewed", action="append", default=[],
                   help="review export (.zip from the API, or .jsonl); repeatable")
    p.add_argument("--registry", required=True, help="model registry folder (runs/ + current pointer)")
    p.add_argument("--margin", type=float, default=0.01, help="largest PR-AUC drop allowed for any class")
    add_quiet(p)
    p.set_defaults(handler=run)


def run(args) -> int:
    quiet_libraries()
    from eval.promotion import retrain, reviewed_files
    from moderation.config import load_config
    from moderation.registry import Registry

    config = load_config(args.config, args.overrides)
    registry = Registry(args.registry)
    result = retrain(config, reviewed_files(args.reviewed, registry.root), registry, args.margin, not args.quiet)
    print(("PROMOTED " if result.promoted else "REFUSED ") + result.new_version)
    for reason in result.reasons:
        print(f"  {reason}")
    print(f"comparison: {result.report}")
    return 0
