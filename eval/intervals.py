"""Confidence intervals for the rates audits report: seeded bootstrap percentile intervals and Wilson intervals.

Owns how uncertain a reported precision, recall, F1 or false-positive rate is. Two tools:

- `bootstrap_at_threshold`: percentile intervals for precision / recall / F1 / false-positive rate at one
  threshold. Resampling n items with replacement and counting (tp, fp, fn, tn) is exactly a multinomial draw
  of n over the four observed cell shares, so the bootstrap is drawn as `(B, 4)` multinomial counts: fully
  vectorised, O(B) memory whatever n is, and identical in distribution to resampling rows.
- `wilson_interval`: the Wilson score interval for k successes in n trials, for counts too small or too
  sparse to bootstrap well (live review outcomes).
- `rate_ratio_interval`: the ratio of two groups' rates (e.g. false-positive rates with and without an
  identity mention), with an interval that stays meaningful when a group has 0 or all of its posts flagged.

Rates that are undefined in a replicate (no predicted positive for precision, say) are left out of that
replicate's percentile; an interval is `None` when the rate is undefined on the observed data. At an observed
rate of exactly 0 or 1 every resample repeats it and the percentile interval collapses to a point ("100%
[100–100]" after 3 of 3), so precision, recall and false-positive rate fall back to the Wilson interval there.
An interval is a dict {"value", "low", "high", "method"} so reports and JSON read the same way.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import norm

CONFIDENCE = 0.95
RATES = ("precision", "recall", "f1", "false_positive_rate")


def _check_confidence(confidence: float) -> float:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    return float(confidence)


def wilson_interval(successes: int, trials: int, confidence: float = CONFIDENCE) -> dict | None:
    """{"value": k/n, "low", "high", "method": "wilson"}: the Wilson score interval; `None` with no trials.

    >>> {k: round(v, 3) for k, v in wilson_interval(8, 10).items() if k != "method"}
    {'value': 0.8, 'low': 0.49, 'high': 0.943}
    """
    if trials < 0 or not 0 <= successes <= max(trials, 0):
        raise ValueError(f"need 0 <= successes <= trials, got successes={successes!r}, trials={trials!r}")
    if trials == 0:
        return None
    z = float(norm.ppf(0.5 + _check_confidence(confidence) / 2))
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    return {"value": p, "low": max(0.0, centre - half), "high": min(1.0, centre + half), "method": "wilson"}


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num, den = np.asarray(num, np.float64), np.asarray(den, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def rates_from_counts(tp, fp, fn, tn) -> dict[str, np.ndarray]:
    """Precision, recall, F1 (2tp / (2tp + fp + fn), as sklearn) and false-positive rate; NaN where undefined."""
    tp, fp, fn, tn = (np.asarray(x, np.float64) for x in (tp, fp, fn, tn))
    return {
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "false_positive_rate": _ratio(fp, fp + tn),
    }


def percentile_interval(value: float, replicates: np.ndarray, confidence: float = CONFIDENCE) -> dict | None:
    """{"value", "low", "high"} from bootstrap replicates (NaNs ignored); `None` when `value` is undefined."""
    if value is None or not math.isfinite(value):
        return None
    alpha = (1.0 - _check_confidence(confidence)) / 2
    finite = replicates[np.isfinite(replicates)]
    if finite.size == 0:
        return {"value": float(value), "low": None, "high": None, "method": "bootstrap"}
    low, high = np.quantile(finite, [alpha, 1.0 - alpha])
    return {"value": float(value), "low": float(low), "high": float(high), "method": "bootstrap"}


def confusion_counts(label: np.ndarray, score: np.ndarray, threshold: float) -> tuple[int, int, int, int]:
    """(tp, fp, fn, tn) when `score >= threshold` predicts positive; `label` is 1-D 0/1 over known labels."""
    predicted, positive = score >= threshold, label == 1.0
    return (int(np.sum(predicted & positive)), int(np.sum(predicted & ~positive)),
            int(np.sum(~predicted & positive)), int(np.sum(~predicted & ~positive)))


def bootstrap_counts(counts, n_bootstrap: int, rng: np.random.Generator) -> np.ndarray:
    """(n_bootstrap, k) resampled cell counts: a multinomial draw of sum(counts) over the observed cell shares."""
    counts = np.asarray(counts, np.int64)
    if n_bootstrap < 1:
        raise ValueError(f"n_bootstrap must be >= 1, got {n_bootstrap!r}")
    total = int(counts.sum())
    if total == 0:
        return np.zeros((n_bootstrap, len(counts)), np.int64)
    return rng.multinomial(total, counts / total, size=n_bootstrap)


def bootstrap_at_threshold(label, score, threshold: float, rng: np.random.Generator, n_bootstrap: int = 1000,
                           confidence: float = CONFIDENCE) -> dict:
    """Counts and percentile intervals of every rate in RATES at `threshold`.

    Returns {"threshold", "tp", "fp", "fn", "tn", "precision": interval, "recall": ..., "f1": ...,
    "false_positive_rate": ...}, each interval {"value", "low", "high"} or `None` where undefined.

    >>> out = bootstrap_at_threshold(np.array([1., 1., 0., 0.]), np.array([.9, .2, .8, .1]), 0.5,
    ...                              np.random.default_rng(0), n_bootstrap=200)
    >>> out["tp"], out["fp"], out["precision"]["value"], out["precision"]["low"] <= 0.5 <= out["precision"]["high"]
    (1, 1, 0.5, True)
    """
    label, score = np.asarray(label, np.float64), np.asarray(score, np.float64)
    if label.shape != score.shape or label.ndim != 1:
        raise ValueError(f"label and score must be 1-D of one length, got shapes {label.shape} and {score.shape}")
    counts = confusion_counts(label, score, float(threshold))
    point = rates_from_counts(*counts)
    replicates = rates_from_counts(*bootstrap_counts(counts, n_bootstrap, rng).T)
    out = {"threshold": float(threshold), **dict(zip(("tp", "fp", "fn", "tn"), counts))}
    tp, fp, fn, tn = counts
    fractions = {"precision": (tp, tp + fp), "recall": (tp, tp + fn), "false_positive_rate": (fp, fp + tn)}
    for rate in RATES:
        value = float(point[rate])
        if rate in fractions and value in (0.0, 1.0):
            out[rate] = wilson_interval(*fractions[rate], confidence)
        else:
            out[rate] = percentile_interval(value, replicates[rate], confidence)
    return out


def rate_ratio_interval(k_a: int, n_a: int, k_b: int, n_b: int, rng: np.random.Generator,
                        n_draws: int = 1000, confidence: float = CONFIDENCE) -> dict | None:
    """(k_a / n_a) / (k_b / n_b) with a percentile interval over `n_draws` ratios of rates drawn from each
    group's Jeffreys posterior, Beta(k + 1/2, n - k + 1/2).

    Drawn rather than resampled because a resampled group with 0 (or all) of its posts flagged repeats that
    every time, and the ratio's interval would collapse to a point; the Jeffreys draws stay honest there.
    `None` when either group is empty or the observed denominator rate is 0 (the ratio is undefined).

    >>> r = rate_ratio_interval(30, 100, 10, 100, np.random.default_rng(0))
    >>> round(r["value"], 6), r["low"] < 3.0 < r["high"]
    (3.0, True)
    """
    if n_a == 0 or n_b == 0 or k_b == 0:
        return None
    rate_a = rng.beta(k_a + 0.5, n_a - k_a + 0.5, size=n_draws)
    rate_b = rng.beta(k_b + 0.5, n_b - k_b + 0.5, size=n_draws)
    out = percentile_interval((k_a / n_a) / (k_b / n_b), rate_a / rate_b, confidence)
    return {**out, "method": "jeffreys"}
