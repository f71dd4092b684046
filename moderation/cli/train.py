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
    from eval.evaluate import train_and_evaluate
    from moderation.config import load_config

    config = load_config(args.config, args.overrides)
    # train_run with evaluation injected (training never imports eval): the same wiring ladder and retrain use.
    run_dir = train_and_evaluate(config, overwrite=args.overwrite, progress=not args.quiet)
    print(f"run written to {run_dir}")
    print(f"report: {run_dir / 'report' / 'report.md'}")
    return 0
