"""`moderation predict`: score posts with a run (fused, text-only and image-only scores) into a JSONL, CSV or
Parquet file (the format follows each file's extension; see moderation.data.generic)."""

from __future__ import annotations

from .common import add_quiet, add_run, quiet_libraries


def add_parser(sub, parents, argv) -> None:
    p = sub.add_parser("predict", parents=parents,
                       help="score posts: JSONL, CSV or Parquet (by extension), or one text / image path per line")
    add_run(p)
    p.add_argument("--data", required=True, help="generic JSONL; CSV or Parquet with a text and/or an image column "
                                                 "(optional id); any other extension: one text or image path per line")
    p.add_argument("--out", required=True, help="a .jsonl ({id, scores, text_scores, image_scores, modality, ocr_text} "
                                                "or {id, error}), or a flat .csv / .parquet (score__<category>, ...)")
    p.add_argument("--batch-size", type=int, default=64)
    add_quiet(p)
    p.set_defaults(handler=run)


def run(args) -> int:
    quiet_libraries()
    from pathlib import Path

    from moderation import Moderator
    from moderation.data.generic import check_output_path, read_prediction_inputs, write_predictions_file

    check_output_path(Path(args.out))  # before the model loads: a wrong extension fails at once
    rows = read_prediction_inputs(Path(args.data))
    moderator = Moderator(args.run)
    # A row the model cannot score (nothing it reads, an undecodable picture) is written with its reason and
    # the file goes on: one bad row must not cost the other predictions.
    results = moderator.score([{**row, "id": row.get("id", str(i))} for i, row in enumerate(rows)],
                              batch_size=args.batch_size, unscorable="mark", progress=not args.quiet)
    write_predictions_file(results, Path(args.out))
    failed = [r for r in results if "error" in r]
    print(f"{len(results) - len(failed)} predictions written to {args.out} (model {moderator.version})"
          + (f"; {len(failed)} rows could not be scored (their `error` says why)" if failed else ""))
    return 0
