"""`moderation release CONFIG`: a model the way the shipped one is made, in one command (eval.release)."""

from __future__ import annotations

from .common import add_overrides, add_quiet, quiet_libraries


def add_parser(sub, parents, argv) -> None:
    p = sub.add_parser("release", parents=parents,
                       help="cross-source benchmark, train, evasion benchmark, thresholds from held-out sources, "
                            "model card: `moderation release configs/default.yaml --overwrite` rebuilds the "
                            "shipped model")
    p.add_argument("config")
    add_overrides(p)
    p.add_argument("--label", help="the recipe's name under runs/cross_source and in BENCHMARKS.md "
                                   "(default: the config's run.name)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing run directory of that name (or the shipped model)")
    p.add_argument("--no-write", action="store_true", help="leave BENCHMARKS.md alone")
    p.add_argument("--compare-to", metavar="DIR",
                   help="another recipe's cross-source folder (runs/cross_source/<label>): the model card compares "
                        "the two per class and per decision rate")
    add_quiet(p)
    p.set_defaults(handler=run)


def run(args) -> int:
    quiet_libraries()
    from eval.release import release

    run_dir = release(args.config, args.overrides, label=args.label, overwrite=args.overwrite,
                      progress=not args.quiet, write_benchmarks=not args.no_write, compare_to=args.compare_to)
    print(f"run written to {run_dir}")
    print(f"model card: {run_dir / 'MODEL_CARD.md'}")
    return 0
