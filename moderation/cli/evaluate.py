"""`moderation evaluate`: re-evaluate a run directory, or evaluate a run on a labelled JSONL file."""

from __future__ import annotations

from .common import add_quiet, add_run, quiet_libraries


def add_parser(sub, parents, argv) -> None:
    p = sub.add_parser("evaluate", parents=parents,
                       help="re-evaluate a run directory (thresholds, report, model card), or per-class PR-AUC "
                            "of a run on a generic JSONL file")
    add_run(p)
    p.add_argument("--data", help="generic JSONL: {id, text, image, labels}; without it the run directory "
                                  "itself is re-evaluated from its predictions")
    p.add_argument("--out", help="report folder with --data (default: ./eval-<data name>)")
    add_quiet(p)
    p.set_defaults(handler=run)


def run(args) -> int:
    quiet_libraries()
    from eval.evaluate import evaluate_file, evaluate_run

    if args.data:
        out = evaluate_file(args.run, args.data, args.out, progress=not args.quiet)
        print(f"report: {out / 'report.md'}")
        return 0
    if not args.run:  # evaluate_run writes into the run directory: never into the installed package
        raise ValueError("give --run DIR to re-evaluate a run directory, or --data FILE to evaluate on a file")
    if args.out:
        raise ValueError(f"--out {args.out}: re-evaluating writes into the run directory; --out goes with --data")
    evaluate_run(args.run, progress=not args.quiet)
    print(f"thresholds, report and model card rewritten in {args.run}")
    return 0
