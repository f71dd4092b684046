"""`moderation ladder CONFIG`: text-only, image-only, late and concat heads from one config, one table."""

from __future__ import annotations

from .common import add_overrides, add_quiet, quiet_libraries


def add_parser(sub, parents, argv) -> None:
    p = sub.add_parser("ladder", parents=parents,
                       help="train text-only, image-only, late and concat heads from one config; "
                            "table into BENCHMARKS.md")
    p.add_argument("config")
    add_overrides(p, "train.epochs=3")
    p.add_argument("--no-write", action="store_true", help="print the table only")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the rungs' earlier runs (only the files a run writes)")
    add_quiet(p)
    p.set_defaults(handler=run)


def run(args) -> int:
    quiet_libraries()
    from pathlib import Path

    from eval.benchmarks.sections import update_section
    from eval.ladder import ladder_table, run_ladder

    results, categories = run_ladder(args.config, args.overrides, progress=not args.quiet, overwrite=args.overwrite)
    table = ladder_table(results, categories)
    print(table)
    if not args.no_write:
        body = ("Test split, per class; thresholds play no part in these ranking metrics. Rungs share the config "
                f"`{args.config}` and differ only in `head.fusion`. text_only reads the caption; image_only "
                "the picture alone (pixel features and the embedding of the text OCR reads in it); late and "
                "concat both.\n\n" + table)
        path = update_section("ladder-" + Path(args.config).stem, f"Fusion ladder: {args.config}", body)
        print(f"written to {path}")
    return 0
