"""`moderation score`: bulk-score a dataset through Ray Data (same model and batching as serving)."""

from __future__ import annotations

from .common import add_run, quiet_libraries


def add_parser(sub, parents, argv) -> None:
    p = sub.add_parser("score", parents=parents,
                       help="bulk-score a dataset through Ray Data (same model and batching as serving)")
    add_run(p)
    p.add_argument("--data", required=True, help="generic JSONL; CSV or Parquet with a text and/or an image column "
                                                 "(optional id); any other extension: one text or image path per line")
    p.add_argument("--out", required=True, help=".jsonl, .csv or .parquet (the format follows the extension)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--concurrency", type=int, default=1, help="model workers")
    p.add_argument("--num-cpus", type=int, help="CPUs for local Ray (default: all)")
    p.set_defaults(handler=run)


def run(args) -> int:
    quiet_libraries()
    import os
    from pathlib import Path

    import ray

    from moderation.data.generic import check_output_path, read_prediction_inputs, write_predictions_file
    from serve.bulk import score_dataset

    check_output_path(Path(args.out))  # before Ray starts: a wrong extension fails at once
    rows = read_prediction_inputs(Path(args.data))
    ray.init(num_cpus=args.num_cpus or os.cpu_count(), include_dashboard=False, configure_logging=False,
             ignore_reinit_error=True)
    predictions = score_dataset(rows, args.run, batch_size=args.batch_size, concurrency=args.concurrency)
    write_predictions_file(predictions, Path(args.out))
    print(f"{len(predictions)} predictions written to {args.out}")
    return 0
