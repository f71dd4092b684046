"""`moderation monitor`: score drift per class and action mix of the served decisions vs the run's reference."""

from __future__ import annotations

from .common import existing_database

DRIFT_EXIT_CODE = 3  # drift flagged: cron and CI see a failure (2 stays "bad input")


def add_parser(sub, parents, argv) -> None:
    p = sub.add_parser("monitor", parents=parents,
                       help="score drift per class and action mix of served decisions vs the run's reference")
    p.add_argument("--run", help="run directory being served (default: the shipped default model)")
    p.add_argument("--registry", help="monitor the registry's current model instead of --run")
    p.add_argument("--log", required=True,
                   help="prediction log URL (the service's queue_url unless it set prediction_log_url)")
    p.add_argument("--window-hours", type=float, default=24.0, help="recent window to compare (hours back from now)")
    p.add_argument("--out", help="report folder (default: ./monitor-<model version>)")
    p.add_argument("--psi-threshold", type=float, default=0.2, help="PSI at or above which a class is flagged as drift")
    p.add_argument("--max-rows", type=int, default=500_000, help="use at most the newest N decisions of the window")
    p.epilog = f"exit status: 0 no drift, {DRIFT_EXIT_CODE} drift flagged in some class, 2 bad input"
    p.set_defaults(handler=run)


def run(args) -> int:
    import json
    from pathlib import Path

    from eval.monitoring.drift import DriftThresholds
    from eval.monitoring.monitor import REPORT_JSON, monitor, monitored_run, recent_window, summary_lines
    from moderation import runfiles
    from serve.db import open_prediction_log

    existing_database(args.log, "--log")
    run_dir = monitored_run(args.run, args.registry)
    version = runfiles.read_json(run_dir / runfiles.MODEL)["version"]
    # purge=False: this reader does not know the service's retention period, so it must not purge.
    with open_prediction_log(args.log, purge=False) as log:
        recent = recent_window(log, version, args.window_hours, args.max_rows)
    report = monitor(run_dir, recent, Path(args.out or f"monitor-{version}"),
                     DriftThresholds.flagging_at(args.psi_threshold))
    print("\n".join(summary_lines(report)))
    flagged = json.loads((report.parent / REPORT_JSON).read_text())["flagged"]
    return DRIFT_EXIT_CODE if flagged else 0
