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
    p.add_argument("--thresholds-from", metavar="DIR",
                   help="choose the run's thresholds on the held-out predictions `moderation bench cross-source` "
                        "wrote in DIR (runs/cross_source/<label>) for the run's recipe, not on its validation split")
    p.add_argument("--compare-to", metavar="DIR",
                   help="with --thresholds-from: another recipe's cross-source folder (e.g. the recipe this run "
                        "replaces); the model card compares the two per class and per decision rate")
    add_quiet(p)
    p.set_defaults(handler=run)


def run(args) -> int:
    quiet_libraries()
    from eval.evaluate import attach_cross_source, evaluate_file, evaluate_run

    if args.data and args.thresholds_from:
        raise ValueError("--thresholds-from re-evaluates a run directory (--run); it does not go with --data")
    if args.data:
        out = evaluate_file(args.run, args.data, args.out, progress=not args.quiet)
        print(f"report: {out / 'report.md'}")
        return 0
    if not args.run:  # evaluate_run writes into the run directory: never into the installed package
        raise ValueError("give --run DIR to re-evaluate a run directory, or --data FILE to evaluate on a file")
    if args.out:
        raise ValueError(f"--out {args.out}: re-evaluating writes into the run directory; --out goes with --data")
    if args.compare_to and not args.thresholds_from:
        raise ValueError("--compare-to goes with --thresholds-from (it compares two cross-source measurements)")
    if args.thresholds_from:
        attach_cross_source(args.run, args.thresholds_from, progress=not args.quiet, compare_to=args.compare_to)
        print(f"thresholds chosen on the held-out predictions in {args.thresholds_from}; report and model card "
              f"rewritten in {args.run}")
        return 0
    evaluate_run(args.run, progress=not args.quiet)
    print(f"thresholds, report and model card rewritten in {args.run}")
    return 0
