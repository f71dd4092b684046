"""Score drift per class: a recent window of served scores against the model's reference distribution.

Owns the statistics and the verdicts: PSI (population stability index) over quantile bins of the reference,
the two-sample Kolmogorov-Smirnov test, the per-class status (drift / watch / stable, or why none was given),
and the allow / review / block mix implied by a run's thresholds (through `moderation.policy`, the one place
the rule lives). Pure functions on arrays: reading the prediction log is `eval.monitoring.monitor`'s (through
an object the caller opened: eval never imports serve), and so is the report.

Why PSI decides and KS only informs: with thousands of logged posts KS rejects "same distribution" for
differences too small to matter, while PSI's conventional bands (< 0.1 stable, 0.1-0.2 watch, > 0.2 drift)
measure how much mass moved, whatever the window size.

>>> rng = np.random.default_rng(0)
>>> psi(rng.beta(2, 8, 5000), rng.beta(2, 8, 5000)) < 0.1
True
>>> psi(rng.beta(2, 8, 5000), rng.beta(5, 5, 5000)) > 0.2
True
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import ks_2samp

from moderation.policy import Action, Reason, Thresholds, threshold_actions

log = logging.getLogger(__name__)

PSI_EPSILON = 1e-4  # floor on a bin's share, so an empty bin gives a large but finite PSI term
STATUS_ORDER = ("drift", "watch", "stable", "too_few", "missing", "no_reference")  # report order, worst first
ACTIONS = tuple(a.value for a in Action)  # allow, review, block: the order of every mix


@dataclass(frozen=True)
class DriftThresholds:
    """When a class is flagged. PSI >= psi_drift: "drift"; >= psi_watch: "watch"; fewer than `min_rows`
    recent scores: "too_few" (never flagged: a handful of posts says nothing about a distribution)."""

    psi_drift: float = 0.2
    psi_watch: float = 0.1
    min_rows: int = 100
    bins: int = 10  # quantile bins of the reference (deciles)

    @classmethod
    def flagging_at(cls, psi_drift: float) -> DriftThresholds:
        """Drift at `psi_drift`; watch at the usual 0.1, or at `psi_drift` itself when that is lower."""
        return cls(psi_drift=psi_drift, psi_watch=min(cls.psi_watch, psi_drift))

    def __post_init__(self) -> None:
        if not 0 < self.psi_watch <= self.psi_drift:
            raise ValueError(f"psi_watch = {self.psi_watch!r}, psi_drift = {self.psi_drift!r}: "
                             "expected 0 < psi_watch <= psi_drift")
        if self.min_rows < 1 or self.bins < 2:
            raise ValueError(f"min_rows = {self.min_rows!r}, bins = {self.bins!r}: expected min_rows >= 1, bins >= 2")


@dataclass
class ClassDrift:
    category: str
    status: str  # one of STATUS_ORDER
    psi: float | None
    ks_statistic: float | None
    ks_pvalue: float | None
    n_reference: int
    n_recent: int
    reference_mean: float | None
    recent_mean: float | None

    @property
    def flagged(self) -> bool:
        return self.status in ("drift", "watch")

    def as_dict(self) -> dict:
        return {**asdict(self), "flagged": self.flagged}


def _finite_1d(values, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array of scores, got shape {array.shape}")
    array = array[np.isfinite(array)]
    if not len(array):
        raise ValueError(f"{name}: no finite scores")
    return array


def psi(reference, recent, bins: int = 10, epsilon: float = PSI_EPSILON) -> float:
    """Population stability index of `recent` against `reference`: sum over bins of (q - p) * ln(q / p).

    Bins are the reference's quantiles (equal reference mass per bin; tied quantiles merge, so a reference
    piled on one value gets fewer bins instead of empty ones). Shares are floored at `epsilon`.
    """
    reference, recent = _finite_1d(reference, "reference"), _finite_1d(recent, "recent")
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)[1:-1]))
    p = _shares(reference, edges, epsilon)
    q = _shares(recent, edges, epsilon)
    return float(np.sum((q - p) * np.log(q / p)))


def _shares(values: np.ndarray, edges: np.ndarray, epsilon: float) -> np.ndarray:
    counts = np.bincount(np.searchsorted(edges, values, side="right"), minlength=len(edges) + 1)
    shares = np.maximum(counts / len(values), epsilon)
    return shares / shares.sum()


def ks(reference, recent) -> tuple[float, float]:
    """(statistic, p-value) of the two-sample Kolmogorov-Smirnov test (scipy.stats.ks_2samp)."""
    result = ks_2samp(_finite_1d(reference, "reference"), _finite_1d(recent, "recent"))
    return float(result.statistic), float(result.pvalue)


def status_of(psi_value: float, thresholds: DriftThresholds) -> str:
    if psi_value >= thresholds.psi_drift:
        return "drift"
    return "watch" if psi_value >= thresholds.psi_watch else "stable"


def compare(reference_categories: Sequence[str], reference_scores: np.ndarray, recent_categories: Sequence[str],
            recent_scores: np.ndarray, thresholds: DriftThresholds | None = None) -> list[ClassDrift]:
    """Per class (reference order, then classes only the recent window has): PSI, KS and a status.

    Columns are matched by name; NaN scores (a row without that class) are left out of that class.
    """
    thresholds = thresholds or DriftThresholds()
    reference_scores, recent_scores = np.asarray(reference_scores, float), np.asarray(recent_scores, float)
    for name, cats, scores in (("reference", reference_categories, reference_scores),
                               ("recent", recent_categories, recent_scores)):
        if scores.ndim != 2 or scores.shape[1] != len(cats):
            raise ValueError(f"{name} scores of shape {scores.shape} do not match its {len(cats)} categories")
    recent_index = {c: j for j, c in enumerate(recent_categories)}
    results = [_compare_one(c, reference_scores[:, i],
                            recent_scores[:, recent_index[c]] if c in recent_index else None, thresholds)
               for i, c in enumerate(reference_categories)]
    for c in recent_categories:
        if c not in reference_categories:
            column = recent_scores[:, recent_index[c]]
            n = int(np.isfinite(column).sum())
            results.append(ClassDrift(c, "no_reference", None, None, None, 0, n, None, _mean(column)))
    return results


def _compare_one(category: str, reference: np.ndarray, recent: np.ndarray | None,
                 thresholds: DriftThresholds) -> ClassDrift:
    reference = reference[np.isfinite(reference)]
    if recent is None:
        return ClassDrift(category, "missing", None, None, None, len(reference), 0, _mean(reference), None)
    recent = recent[np.isfinite(recent)]
    base = dict(category=category, n_reference=len(reference), n_recent=len(recent),
                reference_mean=_mean(reference), recent_mean=_mean(recent))
    if not len(reference):
        return ClassDrift(status="no_reference", psi=None, ks_statistic=None, ks_pvalue=None, **base)
    if len(recent) < thresholds.min_rows:
        return ClassDrift(status="too_few", psi=None, ks_statistic=None, ks_pvalue=None, **base)
    value = psi(reference, recent, thresholds.bins)
    statistic, pvalue = ks(reference, recent)
    return ClassDrift(status=status_of(value, thresholds), psi=value, ks_statistic=statistic, ks_pvalue=pvalue, **base)


def _mean(values: np.ndarray) -> float | None:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if len(finite) else None


def worst_first(results: Sequence[ClassDrift]) -> list[ClassDrift]:
    """Flagged classes first (drift, then watch), each group by PSI, largest first."""
    return sorted(results, key=lambda r: (STATUS_ORDER.index(r.status), -(r.psi or 0.0)))


def action_mix_at_thresholds(categories: Sequence[str], scores: np.ndarray,
                             thresholds: Thresholds) -> dict[str, float | int | None]:
    """Shares of allow / review / block the thresholds give these scores: `moderation.policy.threshold_actions`
    (the policy without random sampling; a class that may not block sends to review at most). A NaN score
    (a row without that class) triggers nothing."""
    actions = threshold_actions(list(categories), np.asarray(scores, float), thresholds)
    return _mix({a: int(np.sum(actions == a)) for a in ACTIONS})


def served_action_mix(actions: Sequence[str], reasons: Sequence[str | None]) -> dict[str, dict]:
    """The window's mix as served, and at the thresholds alone (random-sample reviews counted as allow, which
    is what the thresholds decided), so the latter compares like for like with the reference mix."""
    unknown = sorted(set(actions) - set(ACTIONS))
    if unknown:
        raise ValueError(f"logged actions {unknown} are not among {list(ACTIONS)}")
    served = {a: 0 for a in ACTIONS}
    threshold_only = {a: 0 for a in ACTIONS}
    for action, reason in zip(actions, reasons):
        served[action] += 1
        # A random-sample review is a post the thresholds allowed.
        threshold_only[Action.ALLOW.value if reason == Reason.RANDOM_SAMPLE.value else action] += 1
    return {"served": _mix(served), "at_thresholds": _mix(threshold_only)}


def _mix(counts: dict[str, int]) -> dict[str, float | int | None]:
    rows = sum(counts.values())
    return {**{a: (counts[a] / rows if rows else None) for a in ACTIONS}, "rows": rows}
