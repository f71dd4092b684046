"""Per-class metrics on masked multi-label scores.

Owns the numbers a run is judged by: per-class PR-AUC (average precision), ROC-AUC, prevalence,
calibration (Brier score, expected calibration error) and precision/recall/F1 at the block and review
thresholds, plus `mean_average_precision`, the early-stopping signal training receives as a callable.

Every function is pure: validate -> format -> compute. Unknown labels (`label_mask` False) are dropped
before anything is computed, so they are never counted as negatives. A metric that is undefined on the
known labels (average precision with no known positive, say) is `None`, never 0, so a report can tell
"no labels" apart from "scored badly".

Average precision is sklearn's step-wise sum over the PR curve, never the trapezoid
`auc(recall, precision)`, which is optimistic on the step-shaped PR curve.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

logger = logging.getLogger(__name__)

ECE_BINS = 10


def validate_inputs(labels, label_mask, scores, categories: Sequence[str] | None = None):
    """Check and format `labels`, `label_mask`, `scores`; return them as float64, bool, float64 arrays.

    Raises `ValueError` naming the bad value: mismatched shapes (both shapes), a non-bool mask, a known
    label that is not 0/1, a score that is not a finite probability, or a category count that does not
    match the number of columns. Unknown labels may hold anything (they are never read).

    >>> labels, mask, scores = validate_inputs([[1, 0]], [[True, False]], [[0.9, 0.2]], ["hate", "sexual"])
    >>> labels.dtype, mask.dtype, scores.shape
    (dtype('float64'), dtype('bool'), (1, 2))
    """
    labels = np.asarray(labels, dtype=np.float64)
    label_mask = np.asarray(label_mask)
    scores = np.asarray(scores, dtype=np.float64)
    if labels.ndim != 2:
        raise ValueError(f"labels must be 2-D (N, C), got shape {labels.shape}")
    if label_mask.shape != labels.shape or scores.shape != labels.shape:
        raise ValueError(
            f"labels, label_mask and scores must share one (N, C) shape, got labels {labels.shape}, "
            f"label_mask {label_mask.shape}, scores {scores.shape}"
        )
    # An int or float mask is usually the labels passed by mistake: insist on bool.
    if label_mask.dtype != np.bool_:
        raise ValueError(f"label_mask must be a bool array (True where the label is known), got {label_mask.dtype}")
    known = labels[label_mask]
    bad = ~np.isin(known, (0.0, 1.0))
    if bad.any():
        raise ValueError(f"known labels must be 0 or 1, got {known[bad][:5].tolist()}")
    bad_scores = ~(np.isfinite(scores) & (scores >= 0.0) & (scores <= 1.0))
    if bad_scores.any():
        row, col = np.argwhere(bad_scores)[0]
        raise ValueError(f"scores must be probabilities in [0, 1], got {float(scores[row, col])} at row {row}, column {col}")
    if categories is not None and len(categories) != labels.shape[1]:
        raise ValueError(f"got {len(categories)} categories {list(categories)} for {labels.shape[1]} label columns")
    return labels, label_mask, scores


def _known_column(labels: np.ndarray, label_mask: np.ndarray, scores: np.ndarray, c: int):
    """The known (label, score) pairs of column `c`, as 1-D arrays."""
    keep = label_mask[:, c]
    return labels[keep, c], scores[keep, c]


def binary_metrics_at_threshold(label: np.ndarray, score: np.ndarray, threshold: float) -> dict:
    """Precision, recall, F1 and the predicted-positive count when `score >= threshold` predicts positive.

    `label` and `score` are 1-D over known labels only. Precision is `None` with no predicted positive,
    recall `None` with no positive label, F1 (`2tp / (2tp + fp + fn)`, as sklearn) `None` when both are absent.

    >>> binary_metrics_at_threshold(np.array([1.0, 0.0, 1.0]), np.array([0.9, 0.6, 0.3]), 0.5)
    {'precision': 0.5, 'recall': 0.5, 'f1': 0.5, 'predicted_positive': 2}
    """
    predicted = score >= threshold
    positive = label == 1.0
    tp = int(np.sum(predicted & positive))
    fp = int(np.sum(predicted & ~positive))
    fn = int(np.sum(~predicted & positive))
    return {
        "precision": tp / (tp + fp) if tp + fp else None,
        "recall": tp / (tp + fn) if tp + fn else None,
        "f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else None,
        "predicted_positive": tp + fp,
    }


def expected_calibration_error(label: np.ndarray, score: np.ndarray, n_bins: int = ECE_BINS) -> float | None:
    """Expected calibration error over `n_bins` equal-width score bins; `None` with no labels.

    Sum over bins of (share of items in the bin) * |observed positive rate - mean score|. The last bin is
    closed, so a score of exactly 1.0 lands in it.

    >>> round(expected_calibration_error(np.array([1.0, 0.0]), np.array([0.8, 0.2])), 6)
    0.2
    """
    if len(label) == 0:
        return None
    bins = np.minimum((score * n_bins).astype(np.int64), n_bins - 1)
    count = np.bincount(bins, minlength=n_bins)
    gap = np.abs(np.bincount(bins, weights=label, minlength=n_bins) - np.bincount(bins, weights=score, minlength=n_bins))
    # sum_b (n_b / n) * |sum_b(label) / n_b - sum_b(score) / n_b| == sum_b |sum_b(label) - sum_b(score)| / n
    return float(gap.sum() / count.sum())


def _ranking_metrics(label: np.ndarray, score: np.ndarray) -> dict:
    """Average precision and ROC-AUC, both `None` unless there is a known positive and a known negative."""
    positives = int(np.sum(label == 1.0))
    if positives == 0 or positives == len(label):
        return {"average_precision": None, "roc_auc": None}
    return {
        "average_precision": float(average_precision_score(label, score)),
        "roc_auc": float(roc_auc_score(label, score)),
    }


def class_threshold_dict(entry) -> dict | None:
    """One class's thresholds as a plain dict: a `moderation.policy.ClassThresholds` is flattened to
    {"review", "block", "scoring", "block_target_met", "may_block", "no_block_reason", "source", **measured};
    a mapping (or None) is returned as it is."""
    from moderation.policy import ClassThresholds

    if not isinstance(entry, ClassThresholds):
        return entry
    return {"review": entry.review, "block": entry.block, "scoring": entry.scoring.value,
            "block_target_met": entry.block_target_met, "may_block": entry.may_block,
            "no_block_reason": entry.no_block_reason, "source": entry.source, **entry.measured}


def threshold_dicts(thresholds) -> dict[str, dict] | None:
    """{category: plain dict} from the typed `moderation.policy.Thresholds` (or such a mapping, or None):
    the array code here reads thresholds as dicts, and reports write them as JSON."""
    from moderation.policy import Thresholds

    if isinstance(thresholds, Thresholds):
        return {c: class_threshold_dict(t) for c, t in thresholds.categories.items()}
    return thresholds


def _check_thresholds(thresholds: Mapping[str, Mapping], categories: Sequence[str]) -> None:
    missing = [c for c in categories if c not in thresholds]
    if missing:
        raise ValueError(f"thresholds lack categories {missing} (given: {sorted(thresholds)})")
    for cat in categories:
        for kind in ("block", "review"):
            value = thresholds[cat].get(kind)
            if value is None or not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"thresholds[{cat!r}][{kind!r}] must be in [0, 1], got {value!r}")


def per_class_metrics(
    labels, label_mask, scores, categories: Sequence[str], thresholds: Mapping[str, Mapping] | None = None
) -> dict[str, dict]:
    """Metrics per category, computed on the known labels of each column only.

    Per category: `support` (known labels), `positives`, `prevalence`, `average_precision`, `roc_auc`
    (`None` without both a known positive and a known negative), `brier`, `ece` (`None` without known
    labels). With `thresholds` (`moderation.policy.Thresholds` or {category: {"block": t, "review": t}}) also `block_threshold`,
    `block_precision`, `block_recall`, `block_f1`, `block_predicted_positive` and the same for `review`.

    >>> m = per_class_metrics([[1, 0], [0, 0], [1, 1]], [[True, True], [True, False], [True, True]],
    ...                       [[0.9, 0.1], [0.4, 0.5], [0.7, 0.8]], ["hate", "violence"])
    >>> m["hate"]["average_precision"], m["hate"]["support"], m["violence"]["positives"]
    (1.0, 3, 1)
    """
    labels, label_mask, scores = validate_inputs(labels, label_mask, scores, categories)
    thresholds = threshold_dicts(thresholds)
    if thresholds is not None:
        _check_thresholds(thresholds, categories)
    out: dict[str, dict] = {}
    for c, cat in enumerate(categories):
        label, score = _known_column(labels, label_mask, scores, c)
        support, positives = len(label), int(np.sum(label == 1.0))
        row = {
            "support": support,
            "positives": positives,
            "prevalence": positives / support if support else None,
            **_ranking_metrics(label, score),
            "brier": float(np.mean((score - label) ** 2)) if support else None,
            "ece": expected_calibration_error(label, score),
        }
        for kind in ("block", "review") if thresholds is not None else ():
            t = float(thresholds[cat][kind])
            row[f"{kind}_threshold"] = t
            for key, value in binary_metrics_at_threshold(label, score, t).items():
                row[f"{kind}_{key}"] = value
        out[cat] = row
    return out


def mean_average_precision(labels, label_mask, scores) -> float:
    """Mean average precision over the classes with a known positive and a known negative.

    This is the early-stopping signal: training receives it as a callable rather than importing `eval`.
    Classes without both are left out (their average precision is undefined, not 0). Raises `ValueError`
    when no class has both, since a validation set that cannot rank anything should stop a run, not
    silently report 0 or NaN.

    >>> mean_average_precision([[1, 0], [0, 1], [1, 0]], [[True, False], [True, True], [True, True]],
    ...                        [[0.9, 0.3], [0.2, 0.8], [0.6, 0.1]])
    1.0
    """
    labels, label_mask, scores = validate_inputs(labels, label_mask, scores)
    values = []
    for c in range(labels.shape[1]):
        ap = _ranking_metrics(*_known_column(labels, label_mask, scores, c))["average_precision"]
        if ap is not None:
            values.append(ap)
    if not values:
        raise ValueError(
            f"no class of {labels.shape[1]} has both a known positive and a known negative "
            f"(known positives per class: {np.sum((labels == 1.0) & label_mask, axis=0).tolist()})"
        )
    return float(np.mean(values))
