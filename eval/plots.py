"""Pictures of per-class quality: PR curves per model and the precision/recall trade-off per threshold.

Owns the PNGs a report links to. They are drawn for a trust-and-safety lead: one PR curve per model
(average precision in the legend), the prevalence line a random scorer would sit on, and the block and
review thresholds marked where the main model actually operates.

Figures are built with `matplotlib.figure.Figure` and the Agg canvas, never `pyplot`: no global figure
registry, nothing to leak when many runs are plotted in one process, and no display needed.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.metrics import average_precision_score, precision_recall_curve

from .metrics import binary_metrics_at_threshold, validate_inputs

logger = logging.getLogger(__name__)

DPI = 110
_MARKERS = {"block": ("X", "#c0392b"), "review": ("o", "#e67e22")}


def _figure(width: float = 6.4, height: float = 4.8):
    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


def _main_model(scores_by_model: Mapping[str, np.ndarray], main_model: str | None) -> str:
    if not scores_by_model:
        raise ValueError("scores_by_model is empty: give at least one {model name: scores}")
    name = main_model if main_model is not None else ("model" if "model" in scores_by_model else next(iter(scores_by_model)))
    if name not in scores_by_model:
        raise ValueError(f"main_model {name!r} is not in scores_by_model {list(scores_by_model)}")
    return name


def _mark_thresholds(ax, label: np.ndarray, score: np.ndarray, cut: Mapping | None) -> None:
    """Mark the block and review operating points on the main model's curve."""
    for kind in ("block", "review") if cut else ():
        t = float(cut[kind])
        at = binary_metrics_at_threshold(label, score, t)
        if at["precision"] is None:  # nothing scores above the threshold: no point on the curve
            continue
        marker, color = _MARKERS[kind]
        ax.scatter([at["recall"]], [at["precision"]], marker=marker, s=90, color=color, zorder=5, edgecolor="black",
                   label=f"{kind} @ {t:.3f}: P={at['precision']:.2f} R={at['recall']:.2f}")


def plot_pr_curves(
    labels,
    label_mask,
    scores_by_model: Mapping[str, np.ndarray],
    categories: Sequence[str],
    thresholds: Mapping[str, Mapping] | None,
    out_dir,
    *,
    main_model: str | None = None,
    split: str | None = None,
) -> list[Path]:
    """Write one PNG per category, `pr_<category>.png` (`pr_<split>_<category>.png` with `split`).

    Each has one step-wise PR curve per model with its PR-AUC (average precision) in the legend, the
    prevalence line, and the block/review thresholds of `thresholds` marked on the main model's curve
    (`main_model`: default "model" when present, else the first model). A category without both a known
    positive and a known negative has no PR curve and no PNG (logged). Returns the paths written.
    """
    main = _main_model(scores_by_model, main_model)
    checked = {name: validate_inputs(labels, label_mask, s, categories) for name, s in scores_by_model.items()}
    labels, label_mask, _ = checked[main]
    out_dir = Path(out_dir)
    paths = []
    for c, cat in enumerate(categories):
        keep = label_mask[:, c]
        label = labels[keep, c]
        positives = int(np.sum(label == 1.0))
        if positives == 0 or positives == len(label):
            logger.info("%s: no PR curve (%d known labels, %d positive)", cat, len(label), positives)
            continue
        fig, ax = _figure()
        # Main model first so it keeps the first colour in every picture.
        for name in [main] + [m for m in scores_by_model if m != main]:
            score = checked[name][2][keep, c]
            precision, recall, _ = precision_recall_curve(label, score)
            ap = average_precision_score(label, score)
            ax.plot(recall, precision, drawstyle="steps-post", lw=2 if name == main else 1.3,
                    label=f"{name} (PR-AUC {ap:.3f})")
            if name == main:
                _mark_thresholds(ax, label, score, thresholds.get(cat) if thresholds else None)
        prevalence = positives / len(label)
        ax.axhline(prevalence, color="grey", ls="--", lw=1, label=f"prevalence {prevalence:.3f} (random scorer)")
        where = f" ({split})" if split else ""
        ax.set(xlim=(0, 1.01), ylim=(0, 1.02), xlabel="recall (share of harmful items caught)",
               ylabel="precision (share of flagged items that are harmful)",
               title=f"{cat}{where}: {positives} positive of {len(label)} labelled")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower left", fontsize=8)
        stem = f"pr_{_safe_name(split)}_{_safe_name(cat)}" if split else f"pr_{_safe_name(cat)}"
        paths.append(_save(fig, out_dir / f"{stem}.png"))
    return paths


def plot_threshold_tradeoff(
    labels,
    label_mask,
    scores,
    categories: Sequence[str],
    category: str,
    thresholds: Mapping[str, Mapping] | None,
    out_path,
) -> Path | None:
    """Precision, recall and share flagged against the threshold for one category, block/review drawn.

    The shaded bands are what serving does with a score: allow below `review`, human review between,
    block at or above `block`. Returns the PNG path, or `None` when the category has no known positive
    and negative to draw (logged).
    """
    labels, label_mask, scores = validate_inputs(labels, label_mask, scores, categories)
    if category not in categories:
        raise ValueError(f"category {category!r} is not one of {list(categories)}")
    c = list(categories).index(category)
    keep = label_mask[:, c]
    label, score = labels[keep, c], scores[keep, c]
    positives = int(np.sum(label == 1.0))
    if positives == 0 or positives == len(label):
        logger.info("%s: no trade-off plot (%d known labels, %d positive)", category, len(label), positives)
        return None
    precision, recall, cut = precision_recall_curve(label, score)
    flagged = 1.0 - np.searchsorted(np.sort(score), cut, side="left") / len(score)
    fig, ax = _figure(7.2, 4.8)
    ax.plot(cut, precision[:-1], drawstyle="steps-post", lw=2, label="precision")
    ax.plot(cut, recall[:-1], drawstyle="steps-post", lw=2, label="recall")
    ax.plot(cut, flagged, drawstyle="steps-post", lw=1.2, color="grey", label="share of items flagged")
    cuts = thresholds.get(category) if thresholds else None
    if cuts:
        block, review = float(cuts["block"]), float(cuts["review"])
        ax.axvspan(review, block, color=_MARKERS["review"][1], alpha=0.12, label="review band")
        ax.axvspan(block, 1.0, color=_MARKERS["block"][1], alpha=0.12, label="block band")
        for kind, t in (("block", block), ("review", review)):
            at = binary_metrics_at_threshold(label, score, t)
            text = "P=n/a" if at["precision"] is None else f"P={at['precision']:.2f}"
            ax.axvline(t, color=_MARKERS[kind][1], lw=1.5, ls="-" if kind == "block" else "--",
                       label=f"{kind} {t:.3f} ({text}, R={at['recall']:.2f})")
    ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="score threshold (score >= threshold is flagged)", ylabel="rate",
           title=f"{category}: precision / recall by threshold ({positives} positive of {len(label)} labelled)")
    ax.grid(alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8)
    return _save(fig, Path(out_path))
