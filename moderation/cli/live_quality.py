"""`moderation live-quality`: precision, estimated recall and reviewer agreement from review outcomes."""

from __future__ import annotations

from .common import existing_database


def add_parser(sub, parents, argv) -> None:
    p = sub.add_parser("live-quality", parents=parents,
                       help="precision, estimated recall and reviewer agreement from review outcomes")
    p.add_argument("--queue", required=True, help="review queue URL: sqlite:///path.db or postgresql://...")
    p.add_argument("--run", help="run directory that scored the items (default: the shipped default model); "
                                 "items of other model versions are skipped")
    p.add_argument("--registry", help="judge each item by the thresholds of the registry version that scored it")
    p.add_argument("--sample-rate", type=float, default=0.01,
                   help="fallback for items stored without sampling rates (queues older than the rates being "
                        "stored): the service's random_review_rate then; items that carry their rates use those")
    p.add_argument("--block-sample-rate", type=float,
                   help="fallback for items stored without sampling rates: the service's block_review_rate then "
                        "(default: no block sample); items that carry their rates use those")
    p.add_argument("--blocked", action="append", default=[], metavar="CATEGORY=COUNT",
                   help="posts blocked outright for a category in the same window (counted as caught); repeatable")
    p.add_argument("--out", help="markdown file (a .json with the numbers beside it); default: print")
    p.set_defaults(handler=run)


def run(args) -> int:
    import json
    from pathlib import Path

    from eval.monitoring.live_quality import live_quality, thresholds_for
    from eval.monitoring.live_quality_report import render_live_quality
    from serve.db import open_queue

    existing_database(args.queue, "--queue")
    thresholds, version = thresholds_for(args.run, args.registry)
    with open_queue(args.queue) as queue:
        result = live_quality(queue, thresholds, sample_rate=args.sample_rate, blocked=_blocked_counts(args.blocked),
                              model_version=version, block_sample_rate=args.block_sample_rate)
    text = render_live_quality(result)
    if not args.out:
        print(text)
        return 0
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1, default=str) + "\n")
    print(f"live quality: {out} (numbers in {out.with_suffix('.json')})")
    return 0


def _blocked_counts(pairs: list[str]) -> dict[str, int] | None:
    """--blocked hate=120 --blocked violence=4 -> {"hate": 120, "violence": 4}."""
    counts = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        if not name or not value.isdigit():
            raise ValueError(f"--blocked {pair!r}: expected CATEGORY=COUNT, e.g. hate=120")
        counts[name] = int(value)
    return counts or None
