"""`moderation audit`: per-class audit of a run's thresholds on its own split or a labelled file."""

from __future__ import annotations

from .common import add_quiet, add_run, quiet_libraries


def add_parser(sub, parents, argv) -> None:
    p = sub.add_parser("audit", parents=parents,
                       help="per-class audit of a run's thresholds: intervals, PR curves, calibration, "
                            "slices by source and targeted group, identity false positives")
    add_run(p)
    data = p.add_mutually_exclusive_group(required=True)
    data.add_argument("--data", help="generic JSONL with labels (optional per-row `source` and `target`)")
    data.add_argument("--split", choices=["validation", "test"], help="the run's own split, rebuilt from its config")
    p.add_argument("--out", help="report folder (default: under the working directory, named for the data)")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples per interval")
    p.add_argument("--seed", type=int, default=0)
    add_quiet(p)
    p.set_defaults(handler=run)


def run(args) -> int:
    quiet_libraries()
    from eval.audit import audit

    # Without --out the library writes under the working directory, never inside the installed package.
    report = audit(args.run, args.split or args.data, args.out, n_bootstrap=args.bootstrap, seed=args.seed,
                   progress=not args.quiet)
    print(f"audit report: {report}")
    return 0
