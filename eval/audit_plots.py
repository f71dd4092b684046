"""The audit's pictures: reliability diagrams, slice comparisons and the identity false-positive chart.

Owns the PNGs `eval.audit` links from audit.md (the PR curves come from `eval.plots`). Each is drawn for a
reader who will not open the JSON: plain axis labels, the deployed thresholds marked, interval whiskers.
Built on `matplotlib.figure.Figure` with the Agg canvas, never `pyplot`, as in `eval.plots`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .plots import DPI

BLOCK_COLOR, REVIEW_COLOR = "#c0392b", "#e67e22"
MAX_SLICES = 20  # bars per slice picture; the JSON has every slice
MIN_PLOT_SUPPORT = 10  # labelled posts a slice needs to be drawn: smaller ones are all whisker (the tables keep them)
_DIRECTION = {"overstates": "scores overstate risk", "understates": "scores understate risk",
              "about right": "scores about right on average"}


def _figure(width: float, height: float, rows: int = 1, height_ratios=None):
    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, 1, squeeze=False, gridspec_kw={"height_ratios": height_ratios} if height_ratios else None)
    return fig, axes[:, 0]


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, format="png", bbox_inches="tight")  # "tight" keeps legends placed outside the axes
    return path


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


def plot_reliability(calibration: Mapping, category: str, thresholds: Mapping, out_dir) -> Path:
    """`reliability_<category>.png`: observed harmful share per score bin (Wilson whiskers) against the
    diagonal of perfect calibration, the block/review thresholds, and the posts per bin underneath."""
    bins = [b for b in calibration["bins"] if b["count"]]
    fig, (top, bottom) = _figure(6.4, 6.0, rows=2, height_ratios=[3, 1])
    x = np.array([b["mean_score"] for b in bins])
    y = np.array([b["observed_rate"] for b in bins])
    err = np.array([[b["observed_rate"] - b["observed_low"], b["observed_high"] - b["observed_rate"]] for b in bins]).T
    err = np.clip(err, 0.0, None)  # float rounding can put a Wilson bound a hair past the rate at 0 or 1
    top.plot([0, 1], [0, 1], color="grey", ls="--", lw=1, label="perfectly calibrated")
    top.errorbar(x, y, yerr=err, marker="o", lw=1.5, capsize=3, label="observed share harmful (95% interval)")
    for kind, color, ls in (("block", BLOCK_COLOR, "-"), ("review", REVIEW_COLOR, "--")):
        t = float(thresholds[kind])
        top.axvline(t, color=color, ls=ls, lw=1.2, label=f"{kind} threshold {t:.3f}")
        bottom.axvline(t, color=color, ls=ls, lw=1.2)
    top.set(xlim=(0, 1), ylim=(0, 1.02), ylabel="share of posts that are harmful",
            title=f"{category}: reliability (ECE {calibration['ece']:.3f}; {_DIRECTION[calibration['direction']]})")
    top.grid(alpha=0.3)
    top.legend(loc="upper left", fontsize=8)
    edges = [b["low"] for b in calibration["bins"]]
    width = calibration["bins"][0]["high"] - calibration["bins"][0]["low"]
    bottom.bar(edges, [b["count"] for b in calibration["bins"]], width=width, align="edge", color="#7f8c8d",
               edgecolor="white")
    bottom.set(xlim=(0, 1), xlabel="model score", ylabel="posts")
    bottom.set_yscale("symlog")
    return _save(fig, Path(out_dir) / f"reliability_{_safe_name(category)}.png")


def _interval_bars(ax, names: list[str], intervals: list[dict | None], color: str, offset: float, label: str):
    y = np.arange(len(names)) + offset
    values = np.array([i["value"] if i else np.nan for i in intervals])
    low = np.array([max(i["value"] - i["low"], 0.0) if i and i["low"] is not None else 0.0 for i in intervals])
    high = np.array([max(i["high"] - i["value"], 0.0) if i and i["high"] is not None else 0.0 for i in intervals])
    ax.barh(y, np.nan_to_num(values), height=0.38, color=color, alpha=0.8, label=label)
    ax.errorbar(np.nan_to_num(values), y, xerr=[low, high], fmt="none", ecolor="black", capsize=2, lw=0.8)
    return float(np.nanmax(np.r_[values + high, 0.0]))


def _slice_figure(title: str, names: list[str], rows: list[dict], reference: dict | None) -> Figure:
    fig, (ax,) = _figure(9.0, 1.2 + 0.42 * len(names))  # wide: long source names on the left, legend on the right
    _interval_bars(ax, names, [r["review"]["recall"] for r in rows], "#2e86c1", -0.2,
                   "recall at review (harmful caught)")
    _interval_bars(ax, names, [r["review"]["false_positive_rate"] for r in rows], REVIEW_COLOR, 0.2,
                   "false-positive rate at review (benign flagged)")
    if reference:
        for rate, color in (("recall", "#2e86c1"), ("false_positive_rate", REVIEW_COLOR)):
            value = reference["review"][rate]
            if value:
                ax.axvline(value["value"], color=color, ls=":", lw=1.2)
    ax.set_yticks(np.arange(len(names)), [f"{n} ({r['positives']}/{r['support']})" for n, r in zip(names, rows)],
                  fontsize=8)
    ax.invert_yaxis()
    ax.set(xlim=(0, 1), xlabel="rate (dotted lines: the reference, all posts compared)", title=title)
    ax.grid(alpha=0.3, axis="x")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7)
    return fig


def plot_slices(results: Mapping, categories: Sequence[str], out_dir) -> list[Path]:
    """`slices_source_<category>.png` and `slices_target_<category>.png`: recall and false-positive rate at the
    review threshold per slice (harmful / labelled posts in brackets), for categories with two or more slices
    of at least MIN_PLOT_SUPPORT labelled posts."""
    paths = []
    for kind, slices, reference in (("source", results["by_source"], results["overall"]),
                                    ("target", results["by_target"], results["target_reference"])):
        for cat in categories:
            rows = {name: by_cat[cat] for name, by_cat in slices.items()
                    if cat in by_cat and by_cat[cat]["support"] >= MIN_PLOT_SUPPORT}
            if len(rows) < 2:
                continue
            names = sorted(rows, key=lambda n: -rows[n]["support"])[:MAX_SLICES]
            label = "source dataset" if kind == "source" else "targeted group"
            fig = _slice_figure(f"{cat}: by {label} (review threshold)", names, [rows[n] for n in names],
                                reference.get(cat))
            paths.append(_save(fig, Path(out_dir) / f"slices_{kind}_{_safe_name(cat)}.png"))
    return paths


def plot_identity_fpr(identity: Mapping, categories: Sequence[str], out_dir) -> list[Path]:
    """`identity_fpr.png`: per class, the share of benign posts flagged at the review and block thresholds,
    for posts that mention an identity group and posts that do not. Nothing is drawn without benign posts."""
    cats = [c for c in categories if c in identity["classes"]]
    if not cats:
        return []
    fig, axes = _figure(7.2, 2.0 + 0.9 * len(cats), rows=2)
    for ax, kind in zip(axes, ("review", "block")):
        rows = [identity["classes"][c][kind] for c in cats]
        top = max(_interval_bars(ax, cats, [r["mention"]["false_positive_rate"] for r in rows], "#8e44ad", -0.2,
                                 "mentions an identity group"),
                  _interval_bars(ax, cats, [r["other"]["false_positive_rate"] for r in rows], "#95a5a6", 0.2,
                                 "mentions none"))
        ax.set_yticks(np.arange(len(cats)), cats)
        ax.invert_yaxis()
        # Rates at the block threshold are often near 0: keep the axis from 0 and wide enough to read.
        ax.set(xlim=(0, min(1.0, max(0.05, 1.15 * top))), title=f"benign posts flagged at the {kind} threshold",
               xlabel=f"share of benign posts flagged at the {kind} threshold")
        ax.grid(alpha=0.3, axis="x")
        ax.legend(loc="best", fontsize=7)
    return [_save(fig, Path(out_dir) / "identity_fpr.png")]
