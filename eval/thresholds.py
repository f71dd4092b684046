"""Per-class block and review thresholds, chosen on validation data.

Owns the rule that turns a validation PR curve into the two numbers serving acts on: a score at or above
`block` is blocked, a score in [`review`, `block`) goes to human review. The returned dict is saved as
`thresholds.json` in the run directory, so it holds plain floats, ints, bools, strings and `None` only,
and records for each class the targets, whether they were met and the precision/recall achieved.

The rule, per class, on the known labels of that class only:

- `block` is the lowest threshold whose precision >= `block_precision` among those that predict at least
  `min_predicted_positive` items (a threshold that catches one item is 100% precise by luck): of all
  thresholds that meet the precision target, the one that blocks the most harmful items. When none does,
  the fallback is the threshold with the best precision among those same thresholds, ties going to the
  lower threshold; the entry then says `"block_target_met": False`.
- `review` is the highest threshold whose recall >= `review_recall`: the smallest review queue that still
  catches the target share of harmful items. Recall only falls as the threshold rises, so one exists.
- `review` is clipped to `block` when it would lie above it (`"review_clipped_to_block": True`); recall
  at `block` is then already above the review target, so nothing is lost.
- A class with no known positive cannot be tuned and gets `DEFAULT_BLOCK` / `DEFAULT_REVIEW` with
  `"source": "default"`.
- With `sources` (each row's source dataset) and `max_false_block_rate`, `block` is raised where needed so
  that on *every* source with at least `MIN_SOURCE_NEGATIVES` known negatives of the class, at most that
  share of them would be blocked (`"block_raised_for": source`). Precision pooled over sources is dominated
  by the large ones and depends on each source's base rate; a platform unlike them gets whatever false
  block rate its posts happen to have. A bound on each source's negatives is base-rate free and has to hold
  on every source seen, so it says more about the next one (measured across sources: benign posts blocked
  7.2% -> 0.6% at a 1% bound, harmful posts blocked 23% -> 6%, caught 83% -> 82%; BENCHMARKS.md).
- With `min_block_sources` as well, a class blocks only when that bound was checked on at least that many
  sources (each with `MIN_SOURCE_NEGATIVES` known negatives); otherwise `block_target_met` is False and the
  class sends to review at most (`measured["block_sources_checked"]` says on how many it was). A bound checked
  on one source's posts holds on that source by construction and says little about the next: measured, a
  class labelled by one source only (`sexual`, convabuse) met its bound there and blocked 2.9% of another
  source's benign posts (BENCHMARKS.md, cross-source).

`block_off_domain(cross_source, validation)` combines two such choices the way a run with cross-source
predictions deploys them: the block threshold (and whether it may block at all) from predictions on sources
the model never trained on, the review threshold from validation, clipped to the block threshold. Blocking
acts without a human, so its precision has to hold on data unlike the training data; the review band is a
workload choice, and a review threshold chosen off-domain to keep its recall target flags most benign posts
(measured: 89% vs 58% on held-out sources, BENCHMARKS.md).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
from sklearn.metrics import precision_recall_curve

from moderation.policy import ClassThresholds, Scoring, Thresholds

from .metrics import binary_metrics_at_threshold, validate_inputs

logger = logging.getLogger(__name__)

DEFAULT_BLOCK = 0.9
DEFAULT_REVIEW = 0.5
MIN_PREDICTED_POSITIVE = 5
MIN_SOURCE_NEGATIVES = 200  # below this a source's false block rate moves by whole posts: it sets no bound


def _check_target(name: str, value: float) -> float:
    value = float(value)
    if not 0.0 < value <= 1.0:
        raise ValueError(f"{name} must be in (0, 1], got {value!r}")
    return value


def _block_index(precision: np.ndarray, predicted_positive: np.ndarray, target: float, min_pp: int):
    """Index (into increasing thresholds) of the block threshold, and whether it meets the target."""
    enough = predicted_positive >= min_pp
    # A target met only above every threshold that blocks `min_pp` items is met by luck (a cross-source pool of
    # 93,000 hate labels reached precision 0.9 only at the one post above 0.99999): it does not count.
    meets = np.flatnonzero((precision >= target) & enough)
    if len(meets):
        return int(meets[0]), True
    # On a tiny validation set no threshold may predict `min_pp` items: then every threshold is a candidate.
    candidates = np.where(enough, precision, -1.0) if enough.any() else precision
    # argmax takes the first maximum, i.e. the lowest threshold among equally precise ones (more recall).
    return int(np.argmax(candidates)), False


def _achieved(prefix: str, label: np.ndarray, score: np.ndarray, threshold: float) -> dict:
    # Recomputed with the same function per_class_metrics uses, so thresholds.json and the report agree.
    return {f"{prefix}_{k}": v for k, v in binary_metrics_at_threshold(label, score, threshold).items()}


def _from_curve(label: np.ndarray, score: np.ndarray, block_precision: float, review_recall: float, min_pp: int,
                block_floor: tuple[float, str | None] = (-np.inf, None)) -> dict:
    precision, recall, cut = precision_recall_curve(label, score)
    # sklearn appends a (precision 1, recall 0) end point that has no threshold: drop it.
    precision, recall = precision[:-1], recall[:-1]
    predicted_positive = len(score) - np.searchsorted(np.sort(score), cut, side="left")
    b, block_met = _block_index(precision, predicted_positive, block_precision, min_pp)
    r = int(np.flatnonzero(recall >= review_recall)[-1])
    block, review = float(cut[b]), float(cut[r])
    floor, floor_source = block_floor
    raised = floor_source is not None and floor > block
    if raised:
        block = floor
    clipped = review > block
    if clipped:
        review = block
    return {
        "block": block,
        "review": review,
        "source": "validation",
        "block_target_met": block_met,
        "review_target_met": True,
        "review_clipped_to_block": clipped,
        **({"block_raised_for": floor_source if raised else None} if floor_source is not None else {}),
        **_achieved("block", label, score, block),
        **_achieved("review", label, score, review),
    }


def _negatives_by_source(label: np.ndarray, score: np.ndarray, sources: np.ndarray,
                         min_negatives: int) -> dict[str, np.ndarray]:
    """{source: its known negatives' scores, highest first} for the sources with at least `min_negatives`."""
    out = {}
    for source in np.unique(sources):
        negatives = np.sort(score[(sources == source) & (label == 0)])[::-1]
        if len(negatives) >= min_negatives:
            out[str(source)] = negatives
    return out


def false_block_floor(label: np.ndarray, score: np.ndarray, sources: np.ndarray, rate: float,
                      min_negatives: int = MIN_SOURCE_NEGATIVES) -> tuple[float, str | None]:
    """The lowest threshold that blocks at most `rate` of the known negatives of every source that has at least
    `min_negatives` of them, and the source that sets it (None when no source has enough negatives).

    >>> label = np.zeros(400); score = np.r_[np.linspace(0, 0.5, 200), np.linspace(0, 0.9, 200)]
    >>> t, by = false_block_floor(label, score, np.array(["a"] * 200 + ["b"] * 200), rate=0.01)
    >>> by, round(t, 3), int((score[200:] >= t).sum())  # source b's 2 highest negatives may be blocked
    ('b', 0.891, 2)
    """
    return _floor(_negatives_by_source(label, score, sources, min_negatives), rate)


def _floor(negatives_by_source: dict[str, np.ndarray], rate: float) -> tuple[float, str | None]:
    """`false_block_floor` from each bounding source's negatives, highest first."""
    floor, by = -np.inf, None
    for source, negatives in negatives_by_source.items():
        allowed = int(np.floor(rate * len(negatives)))  # this many negatives may lie at or above the threshold
        t = float(np.nextafter(negatives[allowed], np.inf)) if allowed < len(negatives) else -np.inf
        if t > floor:
            floor, by = t, source
    return floor, by


def _require_enough_sources(cat: str, entry: dict, checked: int, min_sources: int) -> dict:
    """`entry` with the block refused (`block_target_met` False) when the bound was checked on too few sources."""
    entry = {**entry, "block_sources_checked": checked}
    if checked < min_sources and entry["block_target_met"]:
        logger.warning("%s: block threshold checked on %d source(s) with enough known negatives, %d needed: it "
                       "sends to review at most", cat, checked, min_sources)
        entry["block_target_met"] = False
    return entry


def _default(label: np.ndarray, score: np.ndarray) -> dict:
    return {
        "block": DEFAULT_BLOCK,
        "review": DEFAULT_REVIEW,
        "source": "default",
        # Targets cannot be checked without a known positive: neither met nor missed.
        "block_target_met": None,
        "review_target_met": None,
        "review_clipped_to_block": False,
        **_achieved("block", label, score, DEFAULT_BLOCK),
        **_achieved("review", label, score, DEFAULT_REVIEW),
    }


def _warn_if_weak(cat: str, entry: dict, block_precision: float, no_negative: bool) -> None:
    if not entry["block_target_met"]:
        logger.warning("%s: no threshold reaches precision %.3f; block=%.4f gives precision %.3f (fallback)",
                       cat, block_precision, entry["block"], entry["block_precision"])
    if no_negative:
        logger.warning("%s: no known negative; validation precision is trivially 1", cat)


def choose_thresholds(
    labels,
    label_mask,
    scores,
    categories: Sequence[str],
    block_precision: float,
    review_recall: float,
    *,
    zero_shot: Sequence[str] = (),
    source: str = "validation",
    min_predicted_positive: int = MIN_PREDICTED_POSITIVE,
    sources=None,
    max_false_block_rate: float | None = None,
    min_block_sources: int | None = None,
) -> Thresholds:
    """Choose `block` and `review` thresholds per category from held-out scores (see the module docstring).

    Returns the typed `moderation.policy.Thresholds`: per category `review`, `block`, `scoring` (classes in
    `zero_shot` are marked so and never block), `block_target_met`, `source`, and in `measured`:
    "target_block_precision", "target_review_recall", "review_target_met", "review_clipped_to_block",
    "support", "positives", "block_precision", "block_recall", "block_f1", "block_predicted_positive", and
    the same for review. `source` says what the scores are ("validation" or "cross_source"). `sources` (N,) and
    `max_false_block_rate` bound each source's false blocks (module docstring); both or neither.
    `min_block_sources` (with them) lets a class block only when its bound was checked on that many sources.

    >>> t = choose_thresholds([[0], [0], [1], [1]], np.ones((4, 1), bool), [[0.1], [0.6], [0.4], [0.8]],
    ...                       ["hate"], block_precision=0.9, review_recall=1.0)
    >>> t["hate"].block, t["hate"].review, t["hate"].measured["block_recall"], t["hate"].may_block
    (0.8, 0.4, 0.5, False)

    It may not block: precision 1.0 at 0.8 rests on one post, under `min_predicted_positive` (5). Allowed one:

    >>> t = choose_thresholds([[0], [0], [1], [1]], np.ones((4, 1), bool), [[0.1], [0.6], [0.4], [0.8]],
    ...                       ["hate"], block_precision=0.9, review_recall=1.0, min_predicted_positive=1)
    >>> t["hate"].block, t["hate"].may_block
    (0.8, True)
    """
    labels, label_mask, scores = validate_inputs(labels, label_mask, scores, categories)
    block_precision = _check_target("block_precision", block_precision)
    review_recall = _check_target("review_recall", review_recall)
    if min_predicted_positive < 1:
        raise ValueError(f"min_predicted_positive must be >= 1, got {min_predicted_positive}")
    if (sources is None) != (max_false_block_rate is None):
        raise ValueError("sources and max_false_block_rate go together: the bound holds per source")
    if sources is not None:
        sources = np.asarray(sources, dtype=str)
        if sources.shape != (len(labels),):
            raise ValueError(f"sources has shape {sources.shape}, expected ({len(labels)},)")
        max_false_block_rate = _check_target("max_false_block_rate", max_false_block_rate)
    if min_block_sources is not None and (sources is None or min_block_sources < 1):
        raise ValueError(f"min_block_sources={min_block_sources!r} needs sources and is at least 1: it counts the "
                         "sources the false-block bound was checked on")
    out: dict[str, dict] = {}
    for c, cat in enumerate(categories):
        keep = label_mask[:, c]
        label, score = labels[keep, c], scores[keep, c]
        positives = int(np.sum(label == 1.0))
        if positives == 0:
            logger.warning("%s: no known positive in %d validation labels; using default thresholds", cat, len(label))
            entry = _default(label, score)
        else:
            bounding = ({} if sources is None else
                        _negatives_by_source(label, score, sources[keep], MIN_SOURCE_NEGATIVES))
            floor = (-np.inf, None) if sources is None else _floor(bounding, max_false_block_rate)
            entry = _from_curve(label, score, block_precision, review_recall, min_predicted_positive, floor)
            _warn_if_weak(cat, entry, block_precision, no_negative=positives == len(label))
            if min_block_sources is not None:
                entry = _require_enough_sources(cat, entry, len(bounding), min_block_sources)
        out[cat] = {
            **entry,
            **({"target_max_false_block_rate": max_false_block_rate} if sources is not None else {}),
            **({"target_min_block_sources": min_block_sources} if min_block_sources is not None else {}),
            "target_block_precision": block_precision,
            "target_review_recall": review_recall,
            "support": int(len(label)),
            "positives": positives,
        }
    unknown = sorted(set(zero_shot) - set(categories))
    if unknown:
        raise ValueError(f"zero_shot names {unknown}, which are not among the categories {list(categories)}")
    targets = {"block_precision": block_precision, "review_recall": review_recall}
    if sources is not None:
        targets["max_false_block_rate"] = max_false_block_rate
    if min_block_sources is not None:
        targets["min_block_sources"] = min_block_sources
    return _typed(out, zero_shot, source, targets)


def _typed(entries: dict[str, dict], zero_shot: Sequence[str], source: str, targets: dict) -> Thresholds:
    kept = ("review", "block", "block_target_met")
    return Thresholds(targets=targets, categories={
        cat: ClassThresholds(
            **{k: e[k] for k in kept},
            scoring=Scoring.ZERO_SHOT if cat in zero_shot else Scoring.TRAINED,
            source="default" if e["source"] == "default" else source,
            measured={k: v for k, v in e.items() if k not in (*kept, "source")})
        for cat, e in entries.items()})


def false_block_bound(config, sources) -> dict:
    """`choose_thresholds` keyword arguments for a config's `thresholds.max_false_block_rate` and
    `min_block_sources` (none when the bound is off), for rows from `sources`."""
    t = config.thresholds
    if t.max_false_block_rate is None:
        return {}
    return {"sources": sources, "max_false_block_rate": t.max_false_block_rate,
            **({"min_block_sources": t.min_block_sources} if t.min_block_sources is not None else {})}


def block_off_domain(cross_source: Thresholds, validation: Thresholds) -> Thresholds:
    """Per class: `block`, `block_target_met` and the block measurements from `cross_source`; `review` and its
    measurements from `validation`, clipped to the block threshold (see the module docstring).

    >>> ones = np.ones((4, 1), bool)
    >>> off = choose_thresholds([[0], [1], [0], [1]], ones, [[0.7], [0.8], [0.2], [0.9]], ["hate"], 0.9, 0.5,
    ...                         source="cross_source")
    >>> val = choose_thresholds([[0], [0], [1], [1]], ones, [[0.1], [0.6], [0.4], [0.8]], ["hate"], 0.9, 1.0)
    >>> t = block_off_domain(off, val)["hate"]
    >>> t.block, t.review, t.source, t.measured["review_chosen_on"]
    (0.8, 0.4, 'cross_source', 'validation')
    """
    categories = {}
    for cat, off in cross_source.categories.items():
        val = validation[cat]
        review = min(val.review, off.block)
        measured = {**{k: v for k, v in off.measured.items() if not k.startswith("review")},
                    **{k: v for k, v in val.measured.items() if k.startswith("review")},
                    "review_clipped_to_block": review < val.review or bool(val.measured.get("review_clipped_to_block")),
                    "review_chosen_on": val.source, "block_chosen_on": off.source}
        categories[cat] = off.model_copy(update={"review": review, "measured": measured})
    return Thresholds(targets={**validation.targets, **cross_source.targets}, categories=categories)
