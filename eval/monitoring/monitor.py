"""The monitoring report of `moderation monitor`: live score drift and action mix of one served model.

Owns which run is monitored (`monitored_run`), the recent window read from a prediction log
(`recent_window`), `monitor.md` (for people), `monitor.json` (for machines and alerting) and `drift.png` (per
class: the reference and recent score histograms, and their CDFs), flagged classes first everywhere. The
prediction log arrives opened by the caller (the CLI opens `serve`'s), because eval never imports serve; any
object with its `window()` and `versions()` methods will do. A run without a reference distribution (trained
before `reference_scores.npz` existed) still gets a report of the window's action mix, saying plainly that
drift could not be computed.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from moderation import runfiles

from .drift import (
    ACTIONS,
    ClassDrift,
    DriftThresholds,
    action_mix_at_thresholds,
    compare,
    served_action_mix,
    worst_first,
)

log = logging.getLogger(__name__)

REPORT_MD, REPORT_JSON, PLOT = "monitor.md", "monitor.json", "drift.png"
_COLOURS = {"drift": "#c0392b", "watch": "#e67e22"}
_CLASSES_PER_ROW = 2  # each class takes two panels (histogram, CDF)


@dataclass
class RecentWindow:
    """Served decisions of the model being monitored in [since, until): scores[i, j] for categories[j]."""

    categories: list[str]
    scores: np.ndarray  # (N, C), NaN where a row lacks the class
    actions: list[str]
    reasons: list[str | None]
    since: datetime
    until: datetime
    model_version: str
    source: str = ""  # where it was read from (a database URL without its password)
    other_versions: dict[str, int] = field(default_factory=dict)  # rows of other model versions in the window


def monitored_run(run: str | Path | None = None, registry: str | Path | None = None) -> Path:
    """The run being served: the registry's current model when `registry` is given, else `run` (None: the
    shipped default model)."""
    if registry:
        from moderation.registry import Registry

        run_dir = Registry(registry).current_dir()
        if run_dir is None:
            raise ValueError(f"registry {registry}: no current model; give a run directory or promote one")
        return run_dir
    return runfiles.resolve_run_dir(run)


def recent_window(prediction_log, model_version: str, hours: float, max_rows: int | None = None,
                  until: datetime | None = None) -> RecentWindow:
    """The last `hours` of `model_version`'s logged decisions (the newest `max_rows` of them), and how many rows
    other versions logged in the same window. `prediction_log`: serve's `PredictionLog`, or anything with
    `window(model_version, since, until, limit)` and `versions(since, until)`."""
    if not hours > 0:
        raise ValueError(f"window of {hours!r} hours: expected a number of hours > 0")
    until = until or datetime.now(timezone.utc)
    since = until - timedelta(hours=hours)
    logged = prediction_log.window(model_version=model_version, since=since, until=until, limit=max_rows)
    others = {v: n for v, n in prediction_log.versions(since, until).items() if v != model_version}
    engine = getattr(prediction_log, "engine", None)
    source = engine.url.render_as_string(hide_password=True) if engine is not None else ""
    return RecentWindow(logged.categories, logged.scores, list(logged.actions), list(logged.reasons), since, until,
                        model_version, source, others)


def monitor(run_dir: str | Path, recent: RecentWindow, out_dir: str | Path,
            thresholds: DriftThresholds | None = None) -> Path:
    """Write monitor.md, monitor.json and (with a reference) drift.png into `out_dir`; return monitor.md's path."""
    thresholds = thresholds or DriftThresholds()
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cut = runfiles.read_thresholds(run_dir)
    summary = _summary_head(run_dir, recent, thresholds)
    mix = {"window": served_action_mix(recent.actions, recent.reasons)}
    try:
        ref_categories, ref_scores = runfiles.read_reference_scores(run_dir)
    except FileNotFoundError as exc:
        summary.update(reference=None, reference_missing=str(exc), flagged=[], classes=[], plot=None)
        log.info("%s", exc)  # not a warning: the report and the CLI say it where people look
    else:
        results = worst_first(compare(ref_categories, ref_scores, recent.categories, recent.scores, thresholds))
        mix["reference_at_thresholds"] = action_mix_at_thresholds(ref_categories, ref_scores, cut)
        plot = _plot(out_dir / PLOT, results, ref_categories, ref_scores, recent)
        summary.update(reference={"file": runfiles.REFERENCE_SCORES, "rows": len(ref_scores)},
                       flagged=[r.category for r in results if r.flagged],
                       classes=[r.as_dict() for r in results], plot=plot and plot.name)
    summary["action_mix"] = mix
    (out_dir / REPORT_JSON).write_text(json.dumps(_jsonable(summary), indent=2) + "\n")
    path = out_dir / REPORT_MD
    path.write_text(_markdown(summary))
    log.info("monitoring report written to %s (flagged: %s)", path, summary["flagged"] or "none")
    return path


def _summary_head(run_dir: Path, recent: RecentWindow, thresholds: DriftThresholds) -> dict:
    version = runfiles.read_json(run_dir / runfiles.MODEL).get("version")
    if version != recent.model_version:
        log.warning("window is of model %r but the run is %r: comparing anyway", recent.model_version, version)
    hours = (recent.until - recent.since).total_seconds() / 3600
    return {
        "model_version": version, "run_dir": str(run_dir),
        "window": {"since": recent.since.isoformat(), "until": recent.until.isoformat(), "hours": round(hours, 2),
                   "model_version": recent.model_version, "rows": len(recent.actions), "source": recent.source,
                   "other_versions": recent.other_versions},
        "thresholds": {"psi_drift": thresholds.psi_drift, "psi_watch": thresholds.psi_watch,
                       "min_rows": thresholds.min_rows, "bins": thresholds.bins},
    }


def _plot(path: Path, results: Sequence[ClassDrift], ref_categories: list[str], ref_scores: np.ndarray,
          recent: RecentWindow) -> Path | None:
    """One PNG grid, flagged classes first: per class a histogram pair and a CDF pair (reference vs recent)."""
    shown = [r for r in results if r.n_reference and r.n_recent]
    if not shown:
        return None
    rows = math.ceil(len(shown) / _CLASSES_PER_ROW)
    cols = 2 * min(len(shown), _CLASSES_PER_ROW)
    fig = Figure(figsize=(3.2 * cols, 2.8 * rows), dpi=100)
    FigureCanvasAgg(fig)
    ref_index = {c: j for j, c in enumerate(ref_categories)}
    recent_index = {c: j for j, c in enumerate(recent.categories)}
    bins = np.linspace(0, 1, 26)
    for k, r in enumerate(shown):
        ref = _finite(ref_scores[:, ref_index[r.category]])
        new = _finite(recent.scores[:, recent_index[r.category]])
        hist = fig.add_subplot(rows, cols, 2 * k + 1)
        hist.hist(np.clip(ref, 0, 1), bins=bins, density=True, alpha=0.5, label=f"reference ({len(ref)})")
        hist.hist(np.clip(new, 0, 1), bins=bins, density=True, alpha=0.5, label=f"recent ({len(new)})")
        psi_text = "n/a" if r.psi is None else f"{r.psi:.3f}"
        hist.set_title(f"{r.category}: PSI {psi_text} ({r.status})", fontsize=9, color=_COLOURS.get(r.status, "black"))
        hist.set_xlabel("fused score", fontsize=8)
        hist.legend(fontsize=7)
        cdf = fig.add_subplot(rows, cols, 2 * k + 2)
        for values, label in ((ref, "reference"), (new, "recent")):
            ordered = np.sort(values)
            cdf.step(ordered, np.arange(1, len(ordered) + 1) / len(ordered), where="post", label=label)
        ks_text = "n/a" if r.ks_statistic is None else f"{r.ks_statistic:.3f}"
        cdf.set_title(f"{r.category}: CDF, KS D {ks_text}", fontsize=9)
        cdf.set_xlim(0, 1)
        cdf.set_xlabel("fused score", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path


def _finite(values: np.ndarray) -> np.ndarray:
    return values[np.isfinite(values)]


def _markdown(summary: dict) -> str:
    w = summary["window"]
    lines = [f"# Monitoring: {summary['model_version']}", "",
             (f"Window: {w['since']} to {w['until']} ({w['hours']} h), {w['rows']} decisions of model "
              f"`{w['model_version']}` from {w['source'] or 'the prediction log'}.")]
    if w["other_versions"]:
        others = ", ".join(f"`{v}` ({n})" for v, n in w["other_versions"].items())
        lines.append(f"Other model versions in the window (not compared): {others}.")
    lines.append("")
    if summary["reference"] is None:
        lines += ["**Drift not computed:** " + summary["reference_missing"], ""]
    else:
        lines += _drift_section(summary)
    lines += _mix_section(summary["action_mix"])
    return "\n".join(lines) + "\n"


def _drift_section(summary: dict) -> list[str]:
    t = summary["thresholds"]
    flagged = [c for c in summary["classes"] if c["flagged"]]
    verdict = ("**Flagged:** " + ", ".join(f"{c['category']} ({c['status']}, PSI {c['psi']:.3f})" for c in flagged)
               if flagged else "No class is past the drift thresholds.")
    lines = [verdict, "", f"## Score drift per class (reference: {summary['reference']['rows']} validation scores)",
             "", (f"PSI over {t['bins']} reference-quantile bins: >= {t['psi_drift']} drift, >= {t['psi_watch']} "
                  f"watch; classes with fewer than {t['min_rows']} recent scores are not judged. "
                  "KS is shown for context (on large windows its p-value is tiny even for harmless shifts)."), "",
             "| class | status | PSI | KS D | KS p | reference n | recent n | reference mean | recent mean |",
             "|---|---|---|---|---|---|---|---|---|"]
    for c in summary["classes"]:
        cells = [c["category"], c["status"], _num(c["psi"]), _num(c["ks_statistic"]), _num(c["ks_pvalue"], "{:.2g}"),
                 str(c["n_reference"]), str(c["n_recent"]), _num(c["reference_mean"]), _num(c["recent_mean"])]
        lines.append("| " + " | ".join(cells) + " |")
    if summary["plot"]:
        lines += ["", f"![reference vs recent scores per class]({summary['plot']})"]
    return lines + [""]


def _mix_section(mix: dict) -> list[str]:
    columns = [("window, served", mix["window"]["served"]), ("window, at thresholds", mix["window"]["at_thresholds"])]
    if "reference_at_thresholds" in mix:
        columns.append(("reference, at thresholds", mix["reference_at_thresholds"]))
    lines = ["## Action mix", "",
             ("\"At thresholds\" leaves out the random-sample reviews, so the window compares like for like with "
              "the mix the run's thresholds give its validation scores."), "",
             "| action | " + " | ".join(name for name, _ in columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for action in ACTIONS:
        lines.append(f"| {action} | " + " | ".join(_num(m[action], "{:.1%}") for _, m in columns) + " |")
    lines.append("| rows | " + " | ".join(str(m["rows"]) for _, m in columns) + " |")
    return lines


def _num(value, fmt: str = "{:.3f}") -> str:
    return "n/a" if value is None or (isinstance(value, float) and not math.isfinite(value)) else fmt.format(value)


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    return None if isinstance(value, float) and not math.isfinite(value) else value


def summary_lines(report: Path) -> list[str]:
    """What `moderation monitor` tells the person who ran it, from the monitor.json beside `report`."""
    summary = json.loads((Path(report).parent / REPORT_JSON).read_text())
    w = summary["window"]
    others = f" (other versions: {w['other_versions']})" if w["other_versions"] else ""
    lines = [f"model {summary['model_version']}: {w['rows']} decisions in the last {w['hours']:g} h{others}"]
    if summary["reference"] is None:
        lines.append(f"drift not computed: {summary['reference_missing']}")
    for c in summary["classes"]:
        if c["flagged"]:
            lines.append(f"FLAGGED {c['category']}: {c['status']} (PSI {c['psi']:.3f}, KS D {c['ks_statistic']:.3f})")
    if summary["reference"] is not None and not summary["flagged"]:
        lines.append("no class past the drift thresholds")
    return [*lines, f"report: {report}"]
