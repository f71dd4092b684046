"""The `moderation` command: one console script with subcommands.

It is the composition root: the only place that wires the library (moderation), evaluation (eval) and
serving (serve) together. Heavy imports happen inside the handlers so `moderation --help` is instant.
Only this module prints; errors in user input exit with status 2 and a message naming the file, key or row.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path


def _offline_by_default() -> None:
    # The machines this runs on often have no hub access; an online lookup would hang ~25 s then fail.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _quiet_libraries() -> None:
    """Our own progress bars say what is happening; the libraries' per-step bars only bury them."""
    import datasets
    from transformers.utils import logging as hf_logging

    datasets.disable_progress_bars()
    hf_logging.disable_progress_bar()


def cmd_check_config(args) -> int:
    from moderation.config import load_config

    config = load_config(args.config, args.overrides)
    missing = [f"datasets.{n}.path: {d.path} does not exist" for n, d in config.datasets.items()
               if d.loader != "hub" and not Path(d.path).exists()]
    for line in missing:
        print(f"warning: {line}", file=sys.stderr)
    print(f"{args.config}: OK ({len(config.categories)} categories, {len(config.datasets)} datasets, "
          f"fusion {config.head.fusion}, text encoder {config.text_encoder.model}, image encoder {config.image_encoder.kind})")
    return 0


def cmd_train(args) -> int:
    _quiet_libraries()
    from moderation.config import load_config

    config = load_config(args.config, args.overrides)
    from eval.pipeline import train_and_evaluate

    run_dir = train_and_evaluate(config, progress=not args.quiet)
    print(f"run written to {run_dir}")
    print(f"report: {run_dir / 'report' / 'report.md'}")
    return 0


def cmd_ladder(args) -> int:
    _quiet_libraries()
    from eval.benchmarks import update_section
    from eval.ladder import ladder_table, run_ladder

    results, categories = run_ladder(args.config, args.overrides, progress=not args.quiet)
    table = ladder_table(results, categories)
    print(table)
    if not args.no_write:
        body = ("Test split, per class; thresholds play no part in these ranking metrics. Rungs share the config "
                f"`{args.config}` and differ only in `head.fusion`.\n\n" + table)
        print(f"written to {update_section('ladder-' + Path(args.config).stem, f'Fusion ladder: {args.config}', body)}")
    return 0


def cmd_evaluate(args) -> int:
    _quiet_libraries()
    from eval.pipeline import evaluate_file

    out = evaluate_file(args.run, Path(args.data), Path(args.out) if args.out else None, progress=not args.quiet)
    print(f"report: {out / 'report.md'}")
    return 0


def cmd_predict(args) -> int:
    _quiet_libraries()
    from tqdm.auto import tqdm

    from moderation.data.generic import read_prediction_inputs, write_jsonl
    from moderation.predict import Moderator

    rows = read_prediction_inputs(Path(args.data))
    moderator = Moderator(args.run)
    results = []
    for start in tqdm(range(0, len(rows), args.batch_size), desc="predict", unit="batch", disable=args.quiet):
        results.extend(moderator.score(rows[start:start + args.batch_size]))
    write_jsonl(results, Path(args.out))
    print(f"{len(results)} predictions written to {args.out} (model {moderator.version})")
    return 0


def cmd_serve(args) -> int:
    _quiet_libraries()
    import ray
    from ray import serve as ray_serve

    from serve.app import build_app

    overrides = {"run_dir": args.run, "registry_dir": args.registry, "queue_url": args.queue, "host": args.host,
                 "port": args.port}
    if args.dev:
        overrides["auth"] = "disabled"
        print("WARNING: --dev: API keys are NOT checked; every response carries X-Auth-Disabled: true", file=sys.stderr)
    from serve.settings import load_settings

    try:
        settings = load_settings(args.config, **overrides)
    except ValueError as exc:
        if "no api_keys are configured" not in str(exc):
            raise
        # Secure by default: with no keys configured, make one admin key for this machine rather than run open.
        overrides["api_keys"] = [_local_admin_key()]
        settings = load_settings(args.config, **overrides)
    app = build_app({"settings_path": args.config, **overrides})
    ray.init(num_cpus=args.num_cpus or os.cpu_count(), include_dashboard=False, configure_logging=False)
    ray_serve.start(http_options={"host": settings.host, "port": settings.port})
    ray_serve.run(app, name="moderation", route_prefix="/")
    base = f"http://{settings.host}:{settings.port}"
    print(f"moderation service ready: {base}/v1/moderate  (review page {base}/review, API docs {base}/docs)")
    print(f"review queue: {settings.queue_url}; model: {settings.run_dir or 'shipped default model'}")
    try:
        import time

        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        ray_serve.shutdown()
    return 0


KEY_FILE = Path(".moderation-api-key")


def _local_admin_key() -> dict:
    """An admin API key kept in ./.moderation-api-key (created once, readable by this user only)."""
    import secrets

    if not KEY_FILE.exists():
        KEY_FILE.write_text(secrets.token_urlsafe(24) + "\n")
        KEY_FILE.chmod(0o600)
    key = KEY_FILE.read_text().strip()
    print(f"no API keys configured: using the local admin key in {KEY_FILE.resolve()} "
          "(send it as 'Authorization: Bearer <key>'; set MODERATION_API_KEYS for real deployments)")
    return {"name": "local-admin", "roles": ["admin"], "key": key}


def cmd_score(args) -> int:
    _quiet_libraries()
    import ray

    from moderation.data.generic import read_prediction_inputs
    from serve.bulk import score_dataset, write_predictions

    rows = read_prediction_inputs(Path(args.data))
    ray.init(num_cpus=args.num_cpus or os.cpu_count(), include_dashboard=False, configure_logging=False,
             ignore_reinit_error=True)
    predictions = score_dataset(rows, args.run, batch_size=args.batch_size, concurrency=args.concurrency)
    write_predictions(predictions, Path(args.out))
    print(f"{len(predictions)} predictions written to {args.out}")
    return 0


def _reviewed_files(paths: list[str], registry_root: Path) -> list[Path]:
    """Review exports as JSONL paths; a zip from the review API is unpacked into the registry first."""
    import zipfile

    files = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise FileNotFoundError(f"--reviewed {path}: no such file")
        if path.suffix == ".zip":
            target = registry_root / "reviewed" / path.stem
            with zipfile.ZipFile(path) as archive:
                archive.extractall(target)
            path = target / "reviewed.jsonl"
        files.append(path)
    return files


def cmd_retrain(args) -> int:
    _quiet_libraries()
    from eval.retrain import retrain
    from moderation.config import load_config
    from moderation.registry import Registry

    config = load_config(args.config, args.overrides)
    registry = Registry(args.registry)
    result = retrain(config, _reviewed_files(args.reviewed, registry.root), registry, args.margin, not args.quiet)
    print(("PROMOTED " if result.promoted else "REFUSED ") + result.new_version)
    for reason in result.reasons:
        print(f"  {reason}")
    print(f"comparison: {result.report}")
    return 0


def cmd_promote(args) -> int:
    from moderation.registry import Registry

    path = Registry(args.registry).promote(args.version, note=args.note)
    print(f"current model is now {path}")
    return 0


def cmd_monitor(args) -> int:
    import json
    from datetime import datetime, timedelta, timezone

    from eval.drift import DriftThresholds
    from eval.monitor import REPORT_JSON, RecentWindow, monitor
    from moderation import runfiles
    from serve.prediction_log import open_prediction_log

    if args.registry:
        from moderation.registry import Registry

        run_dir = Registry(args.registry).current_dir()
        if run_dir is None:
            raise ValueError(f"registry {args.registry}: no current model; give --run or promote one")
    else:
        run_dir = runfiles.resolve_run_dir(args.run)
    if args.window_hours <= 0:
        raise ValueError(f"--window-hours {args.window_hours}: expected a number of hours > 0")
    version = runfiles.read_json(run_dir / runfiles.MODEL)["version"]
    until = datetime.now(timezone.utc)
    since = until - timedelta(hours=args.window_hours)
    # purge=False: this reader does not know the service's retention period, so it must not purge.
    with open_prediction_log(args.log, purge=False) as log:
        logged = log.window(model_version=version, since=since, until=until, limit=args.max_rows)
        others = {v: n for v, n in log.versions(since, until).items() if v != version}
        source = log.engine.url.render_as_string(hide_password=True)
    recent = RecentWindow(logged.categories, logged.scores, logged.actions, logged.reasons, since, until,
                          version, source, others)
    thresholds = DriftThresholds(psi_drift=args.psi_threshold,
                                 psi_watch=min(DriftThresholds.psi_watch, args.psi_threshold))
    report = monitor(run_dir, recent, Path(args.out or f"monitor-{version}"), thresholds)
    summary = json.loads((report.parent / REPORT_JSON).read_text())
    print(f"model {version}: {len(logged)} decisions in the last {args.window_hours:g} h"
          + (f" (other versions: {others})" if others else ""))
    if summary["reference"] is None:
        print(f"drift not computed: {summary['reference_missing']}")
    for c in summary["classes"]:
        if c["flagged"]:
            print(f"FLAGGED {c['category']}: {c['status']} (PSI {c['psi']:.3f}, KS D {c['ks_statistic']:.3f})")
    if summary["reference"] is not None and not summary["flagged"]:
        print("no class past the drift thresholds")
    print(f"report: {report}")
    return 0


def cmd_audit(args) -> int:
    _quiet_libraries()
    from eval.audit import audit
    from moderation import runfiles

    run_dir = runfiles.resolve_run_dir(args.run)
    out = Path(args.out) if args.out else run_dir / f"audit-{args.split or Path(args.data).stem}"
    report = audit(run_dir, args.split or args.data, out, n_bootstrap=args.bootstrap, seed=args.seed,
                   progress=not args.quiet)
    print(f"audit report: {report}")
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


def cmd_live_quality(args) -> int:
    import json

    from eval.live_quality import live_quality, render_live_quality
    from moderation import runfiles
    from serve.review_queue import open_queue

    if args.registry:
        from moderation.registry import Registry

        registry = Registry(args.registry)

        def thresholds(version: str):  # each item is judged by the thresholds of the version that scored it
            run = registry.run_dir(version)
            return runfiles.read_thresholds(run) if (run / runfiles.THRESHOLDS).is_file() else None

        version = None
    else:
        run_dir = runfiles.resolve_run_dir(args.run)
        thresholds = runfiles.read_thresholds(run_dir)
        # One run's thresholds only fit the items that run scored; other versions' items are skipped.
        version = runfiles.read_json(run_dir / runfiles.MODEL).get("version")
    with open_queue(args.queue) as queue:
        result = live_quality(queue, thresholds, sample_rate=args.sample_rate,
                              blocked=_blocked_counts(args.blocked), model_version=version,
                              block_sample_rate=args.block_sample_rate)
    text = render_live_quality(result)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        out.with_suffix(".json").write_text(json.dumps(result, indent=1, default=str) + "\n")
        print(f"live quality: {out} (numbers in {out.with_suffix('.json')})")
    else:
        print(text)
    return 0


BENCHES = {  # name -> (module in eval.bench, one-line help)
    "compute": ("compute_floor", "matmul floor (fp32, bf16) and the encoders' achieved share of it"),
    "serving": ("serving", "Ray Serve under load vs in-process batched and unbatched calls"),
    "variants": ("inference_variants", "cheaper text-encoder inference: speed and PR-AUC change"),
    "quality": ("quality", "default model vs TF-IDF baseline vs alt-profanity-check, per class"),
}


def cmd_bench(args) -> int:
    import importlib

    _quiet_libraries()
    body = importlib.import_module(f"eval.bench.{BENCHES[args.bench][0]}").run(args)
    print(body)
    return 0


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="moderation", description=__doc__.split("\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("check-config", help="validate a config and report every problem at once")
    p.add_argument("config")
    p.add_argument("overrides", nargs="*", help="key.sub=value overrides")
    p.set_defaults(handler=cmd_check_config)

    p = sub.add_parser("train", help="train, choose thresholds, evaluate and write a run directory")
    p.add_argument("config")
    p.add_argument("overrides", nargs="*", help="key.sub=value overrides, e.g. train.epochs=5")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(handler=cmd_train)

    p = sub.add_parser("ladder", help="train text-only, image-only, late and concat heads from one config; table into BENCHMARKS.md")
    p.add_argument("config")
    p.add_argument("overrides", nargs="*")
    p.add_argument("--no-write", action="store_true", help="print the table only")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(handler=cmd_ladder)

    p = sub.add_parser("evaluate", help="per-class PR-AUC of a run on a generic JSONL file")
    p.add_argument("--run", help="run directory (default: the shipped default model)")
    p.add_argument("--data", required=True, help="generic JSONL: {id, text, image, labels}")
    p.add_argument("--out", help="report folder (default: <run>/eval-<data name>)")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(handler=cmd_evaluate)

    p = sub.add_parser("predict", help="score posts: a generic JSONL file, or one text / image path per line")
    p.add_argument("--run", help="run directory (default: the shipped default model)")
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True, help="output JSONL: {id, scores, text_scores, image_scores}")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(handler=cmd_predict)

    p = sub.add_parser("retrain", help="merge review exports, train a candidate, gate it against the current model, promote")
    p.add_argument("config", help="the base training config")
    p.add_argument("overrides", nargs="*")
    p.add_argument("--reviewed", action="append", default=[], help="review export (.zip from the API, or .jsonl); repeatable")
    p.add_argument("--registry", required=True, help="model registry folder (runs/ + current pointer)")
    p.add_argument("--margin", type=float, default=0.01, help="largest PR-AUC drop allowed for any class")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(handler=cmd_retrain)

    p = sub.add_parser("promote", help="make a registry version current (serving replicas take it up live)")
    p.add_argument("version")
    p.add_argument("--registry", required=True)
    p.add_argument("--note", default="manual promotion")
    p.set_defaults(handler=cmd_promote)

    p = sub.add_parser("audit", help="per-class audit of a run's thresholds: intervals, PR curves, calibration, "
                                     "slices by source and targeted group, identity false positives")
    p.add_argument("--run", help="run directory (default: the shipped default model)")
    data = p.add_mutually_exclusive_group(required=True)
    data.add_argument("--data", help="generic JSONL with labels (optional per-row `source` and `target`)")
    data.add_argument("--split", choices=["validation", "test"], help="the run's own split, rebuilt from its config")
    p.add_argument("--out", help="report folder (default: <run>/audit-<split or data name>)")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples per interval")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(handler=cmd_audit)

    p = sub.add_parser("live-quality", help="precision, estimated recall and reviewer agreement from review outcomes")
    p.add_argument("--queue", required=True, help="review queue URL: sqlite:///path.db or postgresql://...")
    p.add_argument("--run", help="run directory that scored the items (default: the shipped default model); "
                                 "items of other model versions are skipped")
    p.add_argument("--registry", help="judge each item by the thresholds of the registry version that scored it")
    p.add_argument("--sample-rate", type=float, default=0.01,
                   help="the service's random_review_rate (share of allowed posts sent to review)")
    p.add_argument("--block-sample-rate", type=float,
                   help="the service's block_review_rate (share of blocked posts also sent to review); "
                        "those items then measure block precision and stand for every blocked post in recall")
    p.add_argument("--blocked", action="append", default=[], metavar="CATEGORY=COUNT",
                   help="posts blocked outright for a category in the same window (counted as caught); repeatable")
    p.add_argument("--out", help="markdown file (a .json with the numbers beside it); default: print")
    p.set_defaults(handler=cmd_live_quality)

    p = sub.add_parser("monitor", help="score drift per class and action mix of served decisions vs the run's reference")
    p.add_argument("--run", help="run directory being served (default: the shipped default model)")
    p.add_argument("--registry", help="monitor the registry's current model instead of --run")
    p.add_argument("--log", required=True, help="prediction log URL (the service's queue_url unless it set prediction_log_url)")
    p.add_argument("--window-hours", type=float, default=24.0, help="recent window to compare (hours back from now)")
    p.add_argument("--out", help="report folder (default: ./monitor-<model version>)")
    p.add_argument("--psi-threshold", type=float, default=0.2, help="PSI at or above which a class is flagged as drift")
    p.add_argument("--max-rows", type=int, default=500_000, help="use at most the newest N decisions of the window")
    p.set_defaults(handler=cmd_monitor)

    import importlib

    p = sub.add_parser("bench", help="benchmarks; each writes its figures, command and machine into BENCHMARKS.md")
    benches = p.add_subparsers(dest="bench", required=True)
    for name, (module, help_text) in BENCHES.items():
        bp = benches.add_parser(name, help=help_text)
        if argv and argv[:2] == ["bench", name]:  # its options need its module (and sklearn): load it only then
            importlib.import_module(f"eval.bench.{module}").build_parser(bp)
        bp.set_defaults(handler=cmd_bench)

    p = sub.add_parser("serve", help="run the moderation service locally (Ray Serve, batched; review queue and page)")
    p.add_argument("--config", help="serve settings YAML (see serve/serve_settings.yaml); env MODERATION_* also works")
    p.add_argument("--run", help="run directory to serve (default: the shipped default model)")
    p.add_argument("--registry", help="serve the registry's current model and take up promotions without a restart")
    p.add_argument("--queue", help="review queue URL: sqlite:///path.db (default) or postgresql://...")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument("--num-cpus", type=int, help="CPUs for local Ray (default: all)")
    p.add_argument("--dev", action="store_true", help="local development: switch API-key checks OFF (announced)")
    p.set_defaults(handler=cmd_serve)

    p = sub.add_parser("score", help="bulk-score a dataset through Ray Data (same model and batching as serving)")
    p.add_argument("--run", help="run directory (default: the shipped default model)")
    p.add_argument("--data", required=True, help="generic JSONL, or one text / image path per line")
    p.add_argument("--out", required=True)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--concurrency", type=int, default=1, help="model workers")
    p.add_argument("--num-cpus", type=int)
    p.set_defaults(handler=cmd_score)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv)
    # Overrides may follow options (`train cfg.yaml -q train.epochs=3`): argparse stops filling a nargs="*"
    # positional at the first option, so collect the leftover key=value words here.
    args, extra = parser.parse_known_args(argv)
    stray = [w for w in extra if w.startswith("-") or "=" not in w or not hasattr(args, "overrides")]
    if stray:
        parser.error(f"unrecognized arguments: {' '.join(stray)}")
    if extra:
        args.overrides = [*args.overrides, *extra]
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    _offline_by_default()
    from moderation.config import ConfigError
    from moderation.data.records import DataError

    try:
        return args.handler(args)
    except (ConfigError, DataError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:  # library errors name the bad value; show them without a traceback
        if args.verbose:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
