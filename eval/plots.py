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

from .metrics import binary_metrics_at_threshold, class_threshold_dict, threshold_dicts, validate_inputs

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


def _pr_figure(label: np.ndarray, scores: Mapping[str, np.ndarray], main: str, cut: Mapping | None, title: str):
    """One category's PR picture; `scores` maps model name -> 1-D scores over the known labels."""
    fig, ax = _figure()
    # Main model first so it keeps the first colour in every picture.
    for name in [main] + [m for m in scores if m != main]:
        precision, recall, _ = precision_recall_curve(label, scores[name])
        ap = average_precision_score(label, scores[name])
        ax.plot(recall, precision, drawstyle="steps-post", lw=2 if name == main else 1.3,
                label=f"{name} (PR-AUC {ap:.3f})")
        if name == main:
            _mark_thresholds(ax, label, scores[name], cut)
    prevalence = float(np.mean(label == 1.0))
    ax.axhline(prevalence, color="grey", ls="--", lw=1, label=f"prevalence {prevalence:.3f} (random scorer)")
    ax.set(xlim=(0, 1.01), ylim=(0, 1.02), xlabel="recall (share of harmful items caught)",
           ylabel="precision (share of flagged items that are harmful)", title=title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    return fig


def plot_pr_curves(
    labels,
    label_mask,
    scores_by_model: Mapping[str, np.ndarray],
    categories: Sequence[str],
    thresholds: Mapping[str, Mapping] | None,
    out_dir,
    *,
    main_model: str | None = None,
    title_suffix: str = "",
) -> list[Path]:
    """Write `pr_<category>.png` into `out_dir` for each category; return the paths written.

    Each picture has one step-wise PR curve per model with its PR-AUC (average precision) in the legend,
    the prevalence line, and the block/review thresholds of `thresholds` ({category: {"block", "review"}},
    or None) marked on the main model's curve (`main_model`: default "model" when present, else the first
    model). `title_suffix` (e.g. "(test)") ends each title. A category without both a known positive and a
    known negative has no PR curve, so no PNG (logged).
    """
    main = _main_model(scores_by_model, main_model)
    thresholds = threshold_dicts(thresholds)
    labels, label_mask, _ = validate_inputs(labels, label_mask, scores_by_model[main], categories)
    checked = {name: validate_inputs(labels, label_mask, s, categories)[2] for name, s in scores_by_model.items()}
    paths = []
    for c, cat in enumerate(categories):
        keep = label_mask[:, c]
        label = labels[keep, c]
        positives = int(np.sum(label == 1.0))
        if positives == 0 or positives == len(label):
            logger.info("%s: no PR curve (%d known labels, %d positive)", cat, len(label), positives)
            continue
        title = f"{cat}: {positives} positive of {len(label)} labelled {title_suffix}".rstrip()
        fig = _pr_figure(label, {name: s[keep, c] for name, s in checked.items()}, main,
                         thresholds.get(cat) if thresholds else None, title)
        paths.append(_save(fig, Path(out_dir) / f"pr_{_safe_name(cat)}.png"))
    return paths


def _check_one_class(label, score, category: str):
    label, score = np.asarray(label, dtype=np.float64), np.asarray(score, dtype=np.float64)
    if label.ndim != 1 or score.shape != label.shape:
        raise ValueError(f"label and score must be 1-D of one length, got shapes {label.shape} and {score.shape}")
    validate_inputs(label[:, None], np.ones((len(label), 1), bool), score[:, None])
    positives = int(np.sum(label == 1.0))
    if positives == 0 or positives == len(label):
        raise ValueError(f"{category}: a trade-off plot needs a known positive and a known negative, "
                         f"got {positives} positive of {len(label)}")
    return label, score


def plot_threshold_tradeoff(label, score, category: str, thresholds: Mapping | None, out_dir,
                            *, title_suffix: str = "") -> Path:
    """Precision, recall and share flagged against the threshold for one category; return the PNG path.

    `label` and `score` are 1-D over that category's KNOWN labels only; `thresholds` is the category's own
    {"block": t, "review": t} (None: no lines). The shaded bands are what serving does with a score:
    human review in [review, block), block at or above block. Writes `out_dir/tradeoff_<category>.png`.
    Raises `ValueError` without both a known positive and a known negative (there is no curve to draw).
    """
    label, score = _check_one_class(label, score, category)
    thresholds = class_threshold_dict(thresholds)
    precision, recall, cut = precision_recall_curve(label, score)
    flagged = 1.0 - np.searchsorted(np.sort(score), cut, side="left") / len(score)
    # A threshold t flags exactly what the next score cut >= t flags, so values hold to the LEFT of each cut
    # (steps-pre), back to 0 where everything is flagged.
    x = np.concatenate([[0.0], cut])
    fig, ax = _figure(7.2, 4.8)
    for y, style in ((precision[:-1], dict(lw=2, label="precision")), (recall[:-1], dict(lw=2, label="recall")),
                     (flagged, dict(lw=1.2, color="grey", label="share of items flagged"))):
        ax.plot(x, np.concatenate([y[:1], y]), drawstyle="steps-pre", **style)
    if thresholds:
        block, review = float(thresholds["block"]), float(thresholds["review"])
        ax.axvspan(review, block, color=_MARKERS["review"][1], alpha=0.12, label="review band")
        ax.axvspan(block, 1.0, color=_MARKERS["block"][1], alpha=0.12, label="block band")
        for kind, t in (("block", block), ("review", review)):
            at = binary_metrics_at_threshold(label, score, t)
            text = "P=n/a" if at["precision"] is None else f"P={at['precision']:.2f}"
            ax.axvline(t, color=_MARKERS[kind][1], lw=1.5, ls="-" if kind == "block" else "--",
                       label=f"{kind} {t:.3f} ({text}, R={at['recall']:.2f})")
    positives = int(np.sum(label == 1.0))
    ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="score threshold (score >= threshold is flagged)", ylabel="rate",
           title=f"{category}: precision / recall by threshold ({positives} positive of {len(label)}) {title_suffix}".rstrip())
    ax.grid(alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8)
    return _save(fig, Path(out_dir) / f"tradeoff_{_safe_name(category)}.png")


def plot_review_tradeoff(summary: Mapping, path: Path, deployed_target: float | None = None) -> Path:
    """Benign posts flagged against harmful posts caught on sources the model never trained on, one point per
    review recall target (`moderation bench cross-source`'s `review_targets`): a thin line per held-out source,
    the mean over sources thick, the deployed target circled. The review band is a workload choice; this is
    what each choice costs and buys off-domain."""
    fig, ax = _figure()
    for source, result in summary["sources"].items():
        points = result.get("review_targets", {})
        xs = [points[t]["benign_flagged"] for t in points]
        ys = [points[t]["harmful_caught"] for t in points]
        if None not in xs and None not in ys:
            ax.plot(xs, ys, "-", lw=0.8, alpha=0.45, label=source)
    mean = summary["summary"].get("review_targets", {})
    targets = list(mean)
    xs = [mean[t]["benign_flagged"] for t in targets]
    ys = [mean[t]["harmful_caught"] for t in targets]
    ax.plot(xs, ys, "-o", color="black", lw=2.2, label="mean over sources")
    for t, x, y in zip(targets, xs, ys):
        ax.annotate(f"recall {t}", (x, y), textcoords="offset points", xytext=(6, -10), fontsize=8)
        if deployed_target is not None and float(t) == deployed_target:
            ax.plot([x], [y], "o", ms=14, mfc="none", mec=_MARKERS["review"][1], mew=2, label="deployed target")
    ax.set_xlabel("benign posts flagged (review or block)")
    ax.set_ylabel("harmful posts caught (flagged)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.set_title(f"Review target on unseen sources: {summary.get('label', '')}", fontsize=10)
    ax.legend(fontsize=7, loc="lower right")
    return _save(fig, Path(path))
