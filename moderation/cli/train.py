"""`moderation train CONFIG`: train a run directory and evaluate it (thresholds, report, model card)."""

from __future__ import annotations

from .common import add_overrides, add_quiet, quiet_libraries


def add_parser(sub, parents, argv) -> None:
    p = sub.add_parser("train", parents=parents,
                       help="train, choose thresholds, evaluate and write a run directory")
    p.add_argument("config")
    add_overrides(p)
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing run directory of that name (or the shipped model); files the run "
                        "did not write are never deleted")
    add_quiet(p)
    p.set_defaults(handler=run)


def run(args) -> int:
    quiet_libraries()
    from functools import partial

    from eval.evaluate import evaluate_run
    from eval.metrics import mean_average_precision
    from moderation.config import load_config
    from moderation.training import train_run

    config = load_config(args.config, args.overrides)
    # The composition root injects evaluation, so training never imports eval.
    run_dir = train_run(config, overwrite=args.overwrite, progress=not args.quiet,
                        compute_metrics=mean_average_precision, evaluate=partial(evaluate_run, progress=not args.quiet))
    print(f"run written to {run_dir}")
    print(f"report: {run_dir / 'report' / 'report.md'}")
    return 0
