"""The audit's per-class numbers: quality at the thresholds with intervals, calibration bins, slices, and
which slices are measurably worse than the whole.

Owns the rules that turn scores into findings; `eval.audit` wires them to data and `eval.audit_report`
words them. All functions take (labels, label_mask, scores) as in `eval.metrics` and use only known labels.

"Measurably worse" is deliberately conservative, so a reader is not sent chasing noise: a slice is called
out only when it has enough posts (MIN_SLICE_POSITIVES harmful posts for recall, MIN_SLICE_BENIGN benign
posts for false-positive rates) and its whole bootstrap interval lies on the bad side of the reference's
point estimate.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from .intervals import CONFIDENCE, bootstrap_at_threshold, wilson_interval
from .metrics import ECE_BINS, per_class_metrics

MIN_SLICE_POSITIVES = 20
MIN_SLICE_BENIGN = 50
CALIBRATION_TOLERANCE = 0.02  # |mean score - observed rate| below this reads "about right"
KINDS = ("block", "review")


def _column(labels, label_mask, scores, c: int):
    keep = label_mask[:, c]
    return labels[keep, c], scores[keep, c]


def quality_at_thresholds(labels, label_mask, scores, categories: Sequence[str], thresholds: Mapping[str, Mapping],
                          rng: np.random.Generator, n_bootstrap: int = 1000, confidence: float = CONFIDENCE) -> dict:
    """{category: {support, positives, prevalence, average_precision, roc_auc, brier, ece,
    "block": bootstrap_at_threshold(...), "review": ...}} for categories with at least one known label."""
    base = per_class_metrics(labels, label_mask, scores, categories)
    out = {}
    for c, cat in enumerate(categories):
        if not base[cat]["support"]:
            continue
        label, score = _column(labels, label_mask, scores, c)
        row = {k: base[cat][k] for k in ("support", "positives", "prevalence", "average_precision", "roc_auc",
                                         "brier", "ece")}
        for kind in KINDS:
            row[kind] = bootstrap_at_threshold(label, score, float(thresholds[cat][kind]), rng, n_bootstrap, confidence)
        out[cat] = row
    return out


def slice_quality(labels, label_mask, scores, keys: Sequence[Sequence[str]], categories: Sequence[str],
                  thresholds: Mapping[str, Mapping], rng: np.random.Generator, n_bootstrap: int = 1000,
                  confidence: float = CONFIDENCE) -> dict:
    """{slice: quality_at_thresholds on the posts whose `keys` entry names it}; a post may be in several slices."""
    if len(keys) != len(labels):
        raise ValueError(f"got {len(keys)} slice keys for {len(labels)} rows")
    names = sorted({k for ks in keys for k in ks if k})
    out = {}
    for name in names:
        keep = np.array([name in ks for ks in keys])
        out[name] = quality_at_thresholds(labels[keep], label_mask[keep], scores[keep], categories, thresholds, rng,
                                          n_bootstrap, confidence)
    return out


def _bins(label: np.ndarray, score: np.ndarray, n_bins: int) -> list[dict]:
    index = np.minimum((score * n_bins).astype(np.int64), n_bins - 1)  # the same bins as expected_calibration_error
    out = []
    for b in range(n_bins):
        inside = index == b
        n = int(inside.sum())
        observed = wilson_interval(int(label[inside].sum()), n) if n else None
        out.append({"low": b / n_bins, "high": (b + 1) / n_bins, "count": n,
                    "mean_score": float(score[inside].mean()) if n else None,
                    "observed_rate": observed["value"] if observed else None,
                    "observed_low": observed["low"] if observed else None,
                    "observed_high": observed["high"] if observed else None})
    return out


def _direction(mean_score: float, observed: float) -> str:
    gap = mean_score - observed
    if abs(gap) < CALIBRATION_TOLERANCE:
        return "about right"
    return "overstates" if gap > 0 else "understates"


def calibration_summary(labels, label_mask, scores, categories: Sequence[str], n_bins: int = ECE_BINS) -> dict:
    """{category: {ece, brier, mean_score, observed_rate, direction, worst_bin, bins}} for labelled categories.

    `direction` compares the mean score with the observed positive rate ("overstates": scores read higher
    than the share of harmful posts); `worst_bin` is the bin contributing most to the ECE.
    """
    base = per_class_metrics(labels, label_mask, scores, categories)
    out = {}
    for c, cat in enumerate(categories):
        label, score = _column(labels, label_mask, scores, c)
        if not len(label):
            continue
        bins = _bins(label, score, n_bins)
        weight = [b["count"] * abs(b["mean_score"] - b["observed_rate"]) if b["count"] else -1.0 for b in bins]
        mean_score, observed = float(score.mean()), float(label.mean())
        out[cat] = {"ece": base[cat]["ece"], "brier": base[cat]["brier"], "mean_score": mean_score,
                    "observed_rate": observed, "direction": _direction(mean_score, observed),
                    "worst_bin": bins[int(np.argmax(weight))], "bins": bins}
    return out


def _finding(kind: str, slice_kind: str, name: str, cat: str, what: str, rate: str, row: dict, ref: dict) -> dict:
    return {"slice_kind": slice_kind, "slice": name, "category": cat, "threshold": kind, "what": what, "rate": rate,
            "slice_value": row[kind][rate], "reference_value": ref[kind][rate]["value"],
            "support": row["support"], "positives": row["positives"]}


def worse_slices(slices: Mapping[str, Mapping], reference: Mapping[str, Mapping], slice_kind: str) -> list[dict]:
    """Slices whose recall at review is measurably lower, or whose false-positive rate at block or review is
    measurably higher, than `reference` (the whole data, or all posts naming a target), worst gap first."""
    found = []
    for name, by_cat in slices.items():
        for cat, row in by_cat.items():
            ref = reference.get(cat)
            if ref is None:
                continue
            recall, ref_recall = row["review"]["recall"], ref["review"]["recall"]
            if (row["positives"] >= MIN_SLICE_POSITIVES and recall and ref_recall and recall["high"] is not None
                    and recall["high"] < ref_recall["value"]):
                found.append(_finding("review", slice_kind, name, cat, "misses more harmful posts", "recall", row, ref))
            benign = row["support"] - row["positives"]
            for kind in KINDS:
                fpr, ref_fpr = row[kind]["false_positive_rate"], ref[kind]["false_positive_rate"]
                if (benign >= MIN_SLICE_BENIGN and fpr and ref_fpr and fpr["low"] is not None
                        and fpr["low"] > ref_fpr["value"]):
                    what = "blocks more benign posts" if kind == "block" else "flags more benign posts"
                    found.append(_finding(kind, slice_kind, name, cat, what, "false_positive_rate", row, ref))
    return sorted(found, key=lambda f: -abs(f["slice_value"]["value"] - f["reference_value"]))
