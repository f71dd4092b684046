"""The evaluation report written into a run directory: `report.json` (everything) and `report.md` (for people).

Owns how per-class metrics, thresholds, plots and run metadata are laid out for a reader. The markdown
puts the main model's PR-AUC (average precision) beside each baseline's with the difference, then its
ROC-AUC and precision/recall/F1 at the block and review thresholds; a class with no known labels reads
"no labels" (never 0), a metric that is undefined on the known labels reads "n/a". The JSON holds the
same numbers for machines (NaN written as null).
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from .metrics import threshold_dicts

logger = logging.getLogger(__name__)

NO_LABELS = "no labels"
NOT_AVAILABLE = "n/a"
_META_NAMES = {"run_name": "Run", "model_version": "Model version", "split_sizes": "Split sizes", "rows": "Rows"}


def _jsonable(value):
    """Plain JSON types: numpy scalars/arrays unwrapped, NaN/inf as None, paths as strings."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return value.as_posix()
    return value


def _is_per_class(value) -> bool:
    return isinstance(value, Mapping) and bool(value) and all(
        isinstance(v, Mapping) and "support" in v for v in value.values()
    )


def _by_split(results: Mapping, split: str, argument: str, what: str) -> dict[str, dict[str, dict]]:
    """Accept {name: per_class_metrics} (one split, named `split`) or {split: {name: per_class_metrics}}."""
    if results and all(_is_per_class(v) for v in results.values()):
        return {split: dict(results)}
    if results and all(isinstance(v, Mapping) and v and all(_is_per_class(m) for m in v.values()) for v in results.values()):
        return {name: dict(inner) for name, inner in results.items()}
    raise ValueError(
        f"{argument} must be {{{what}: per_class_metrics output}} or {{split: {{{what}: per_class_metrics output}}}}, "
        f"got keys {list(results)}"
    )


def _fmt(value, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return NOT_AVAILABLE
    return f"{value:+.3f}" if signed else f"{value:.3f}"


def _mean(values) -> float | None:
    present = [v for v in values if v is not None]
    return float(np.mean(present)) if present else None


def _main_model(models: Sequence[str], main_model: str | None) -> str:
    name = main_model if main_model is not None else ("model" if "model" in models else models[0])
    if name not in models:
        raise ValueError(f"main_model {name!r} is not among the models in results {list(models)}")
    return name


def _header(main: str, others: Sequence[str]) -> list[str]:
    cols = ["category", "support", "positives", f"PR-AUC (average precision) {main}"]
    for other in others:
        cols += [f"PR-AUC {other}", f"Δ {main} − {other}"]
    cols += [f"ROC-AUC {main}", "block P / R / F1", "review P / R / F1"]
    return ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]


def _at(row: Mapping, kind: str) -> str:
    if f"{kind}_precision" not in row:
        return NOT_AVAILABLE
    return " / ".join(_fmt(row.get(f"{kind}_{k}")) for k in ("precision", "recall", "f1"))


def _ap_diff(a: Mapping, b: Mapping | None) -> float | None:
    if b is None or a.get("average_precision") is None or b.get("average_precision") is None:
        return None
    return a["average_precision"] - b["average_precision"]


def _split_table(name: str, models: Mapping[str, Mapping], categories: Sequence[str], main: str) -> list[str]:
    others = [m for m in models if m != main]
    lines = [f"## {name}", "", *_header(main, others)]
    for cat in categories:
        row = models[main].get(cat, {"support": 0, "positives": 0})
        if not row.get("support"):
            width = 1 + 2 * len(others) + 3  # every column after category, support, positives
            lines.append(f"| {cat} | 0 | 0 | " + " | ".join([NO_LABELS] * width) + " |")
            continue
        cells = [cat, str(row["support"]), str(row["positives"]), _fmt(row.get("average_precision"))]
        for other in others:
            other_row = models[other].get(cat)
            cells += [_fmt(other_row.get("average_precision") if other_row else None), _fmt(_ap_diff(row, other_row), True)]
        cells += [_fmt(row.get("roc_auc")), _at(row, "block"), _at(row, "review")]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", _mean_line(models, categories, main, others), ""]
    return lines


def _mean_line(models: Mapping[str, Mapping], categories: Sequence[str], main: str, others: Sequence[str]) -> str:
    rows = models[main]
    ranked = [c for c in categories if rows.get(c, {}).get("average_precision") is not None]
    parts = [f"{m} {_fmt(_mean(models[m].get(c, {}).get('average_precision') for c in ranked))}" for m in [main, *others]]
    return f"Mean PR-AUC (average precision) over the {len(ranked)} of {len(categories)} classes with labels: " + ", ".join(parts)


def _mean_ap(by_split: Mapping[str, Mapping[str, Mapping]], categories: Sequence[str]) -> dict:
    return {
        split: {m: _mean(rows.get(c, {}).get("average_precision") for c in categories) for m, rows in models.items()}
        for split, models in by_split.items()
    }


def _thresholds_table(thresholds: Mapping[str, Mapping], categories: Sequence[str]) -> list[str]:
    lines = ["## Thresholds (chosen on validation)", "",
             "| category | source | block | precision at block (target) | review | recall at review (target) | blocks? |",
             "|---|---|---|---|---|---|---|"]
    for cat in categories:
        t = thresholds.get(cat)
        if t is None:
            lines.append(f"| {cat} | missing | | | | | |")
            continue
        met = " **target not met**" if t.get("block_target_met") is False else ""
        clipped = " (clipped to block)" if t.get("review_clipped_to_block") else ""
        raised = (f" (raised: blocks at most {100 * t['target_max_false_block_rate']:g}% of {t['block_raised_for']}'s "
                  "negatives)" if t.get("block_raised_for") else "")
        lines.append(
            f"| {cat} | {t.get('source', NOT_AVAILABLE)} | {_fmt(t['block'])}{raised} | "
            f"{_fmt(t.get('block_precision'))} ({_fmt(t.get('target_block_precision'))}){met} | {_fmt(t['review'])}{clipped} | "
            f"{_fmt(t.get('review_recall'))} ({_fmt(t.get('target_review_recall'))}) | {_blocks(t)} |"
        )
    return lines + [""]


def _blocks(t: Mapping) -> str:
    """Whether the policy lets the class block (typed thresholds say; an untyped dict cannot tell)."""
    if "may_block" not in t:
        return NOT_AVAILABLE
    return "yes" if t["may_block"] else f"no: {t.get('no_block_reason') or 'never blocks'}"


def _slice_table(split: str, slices: Mapping[str, Mapping], categories: Sequence[str], main: str) -> list[str]:
    lines = [f"## {split} by source ({main}): PR-AUC (average precision) (positives / support)", "",
             "| source | " + " | ".join(categories) + " |", "|---|" + "---|" * len(categories)]
    for source, rows in slices.items():
        cells = []
        for cat in categories:
            row = rows.get(cat, {})
            cells.append(f"{_fmt(row.get('average_precision'))} ({row['positives']}/{row['support']})"
                         if row.get("support") else NO_LABELS)
        lines.append(f"| {source} | " + " | ".join(cells) + " |")
    return lines + [""]


def _meta_lines(meta: Mapping) -> list[str]:
    lines = []
    for key, value in meta.items():
        if isinstance(value, Mapping):
            value = ", ".join(f"{k} {v}" for k, v in value.items())
        lines.append(f"- {_META_NAMES.get(key, key)}: {value}")
    return lines + [""]


def _relative(paths: Sequence, out_dir: Path) -> list[str]:
    # Relative links keep the report readable after the run directory is copied or archived.
    return [Path(os.path.relpath(Path(p).resolve(), out_dir.resolve())).as_posix() for p in paths]


def write_report(
    out_dir,
    categories: Sequence[str],
    results: Mapping[str, Mapping],
    thresholds: Mapping[str, Mapping] | None,
    plots: Sequence,
    meta: Mapping,
    slices: Mapping[str, Mapping] | None = None,
    *,
    main_model: str | None = None,
    split: str = "test",
) -> tuple[Path, Path]:
    """Write `report.md` and `report.json` into `out_dir`; return their paths (md, json).

    `results` is {model name: per_class_metrics output} for one split (named `split`), or
    {split: {model name: per_class_metrics output}} for several, each split getting its own table.
    `main_model` (default "model" when present, else the first) is compared against every other model.
    `slices` holds the main model's per_class_metrics output per data source, as {source: ...} (for
    `split`) or {split: {source: ...}}. `meta` is listed as given (`run_name`, `model_version`,
    `split_sizes` read best). `plots` are linked by paths relative to `out_dir`.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    thresholds = threshold_dicts(thresholds)
    by_split = _by_split(results, split, "results", "model")
    main = _main_model(list(next(iter(by_split.values()))), main_model)
    plot_links = _relative(plots, out_dir)
    title = meta.get("run_name") or meta.get("model_version") or out_dir.name
    lines = [f"# Evaluation report: {title}", "", *_meta_lines(meta)]
    lines += [f"Main model: `{main}`. {NO_LABELS}: no known label for the class in the split; "
              f"{NOT_AVAILABLE}: undefined on the known labels (e.g. no known positive). "
              "P / R / F1: precision / recall / F1 where score >= threshold.", ""]
    for name, models in by_split.items():
        lines += _split_table(name, models, categories, _main_model(list(models), main))
    if thresholds:
        lines += _thresholds_table(thresholds, categories)
    slices_by_split = _by_split(slices, split, "slices", "source") if slices else {}
    for name, by_source in slices_by_split.items():
        lines += _slice_table(name, by_source, categories, main)
    if plot_links:
        lines += ["## Plots", ""] + [f"![{Path(p).stem}]({p})" for p in plot_links] + [""]
    md_path, json_path = out_dir / "report.md", out_dir / "report.json"
    md_path.write_text("\n".join(lines), encoding="utf-8")
    payload = {"meta": meta, "categories": list(categories), "main_model": main, "results": by_split,
               "mean_average_precision": _mean_ap(by_split, categories), "thresholds": thresholds or {},
               "slices": slices_by_split, "plots": plot_links}
    json_path.write_text(json.dumps(_jsonable(payload), indent=2, allow_nan=False), encoding="utf-8")
    logger.info("wrote %s and %s", md_path, json_path)
    return md_path, json_path
