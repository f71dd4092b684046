"""Live quality from review outcomes: per-class precision, an estimate of recall, and reviewer agreement.

Owns how the review queue's decisions become quality estimates of the model in production (the
`moderation live-quality` command). It reads any object with a `reviews()` method yielding records shaped
like serve's `Review` (item_id, scores, action, model_version, reason, sampling, decisions with reviewer,
action and labels) — the review queue is one; this module never imports `serve`.

Per class c, the model's action is re-derived from the item's fused score by `ClassThresholds.action` (the
one policy) with the thresholds of the model version that scored it: block, review or allow, where a class
that may not block (zero-shot, or its block target missed) reviews at most and so never counts as "block".

- Precision of review and block decisions: of the judged items the model flagged for c, the share the
  reviewer labelled c = 1, with a Wilson interval.
- Recall, estimated with the random sample of allowed posts (reason "random_sample", sent to review at a
  known rate r). Each item carries the sampling rates the service used when it enqueued it (`sampling`);
  items from before they were stored use the rates given by hand (`sample_rate`, `block_sample_rate`).
  A random-sample item stands for 1/r allowed posts. Per stratum the share of judged items that are positive
  is scaled to every item in the stratum, decided or not (reviewers serve high-priority items first, so the
  decided share differs by stratum):

      caught  = flagged items x share positive among judged flagged items (+ posts blocked outside the queue)
      missed  = (sum over random-sample items of 1/r) x share positive among judged random-sample items
      recall  = caught / (caught + missed)

  The interval takes percentiles over draws of both shares from their Jeffreys posteriors, Beta(k+1/2, n-k+1/2),
  holding the item counts fixed. Assumptions: each item's r is the rate in force when it was sampled; every post
  the model sent to review was enqueued; judged items are like undecided ones in the same stratum; posts the
  model blocked outright never reach the queue, so unless `blocked` gives their count per class (e.g. from
  the prediction log) caught is understated, and recall with it.
  Blocked posts sent to review at a block-sample rate b (reason "block_sample") are a stratum of their own
  in the same way: each stands for 1/b blocked posts.
- Agreement: on items decided twice (the queue's second-review request), per class the share of items
  where the first two reviewers gave the same label, and Cohen's kappa (agreement beyond chance).

Which label an item has: the latest decision's (as in training exports). A decision's labels hold only the
classes the reviewer judged; an "allow" decision counts as c = 0 for every class it does not label (letting
a post through says it is not harmful in any way), a "block" decision leaves unlabelled classes unknown.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from eval.intervals import CONFIDENCE, percentile_interval, wilson_interval
from moderation.policy import Action, Reason, Sampling, Thresholds

log = logging.getLogger(__name__)

DEFAULT_SAMPLE_RATE = 0.01  # the serving default random_review_rate; only for items stored without their rates
KINDS = REVIEW, BLOCK = (Action.REVIEW.value, Action.BLOCK.value)  # the flagged strata, and precision's keys
RANDOM = Reason.RANDOM_SAMPLE.value
ThresholdsLookup = Callable[[str], Thresholds | None]


def reviewer_label(decision, category: str) -> int | None:
    """The decision's label for `category`: given, else 0 for an "allow" decision, else unknown (None)."""
    value = decision.labels.get(category)
    if value is not None:
        return int(value)
    return 0 if decision.action == Action.ALLOW else None


def thresholds_for(run: str | Path | None = None,
                   registry: str | Path | None = None) -> tuple[ThresholdsLookup, str | None]:
    """(model_version -> its thresholds or None, the one version whose items are kept or None for all).

    With `registry`, each item is judged by the thresholds of the registry version that scored it (None for a
    version the registry does not hold, so its items are skipped). Otherwise by the run's (None: the shipped
    default model), and only that run's items are kept: its thresholds fit no other version's scores."""
    from moderation import runfiles

    if registry:
        from moderation.registry import Registry

        reg = Registry(registry)

        def lookup(version: str) -> Thresholds | None:
            run_dir = reg.run_dir(version)
            return runfiles.read_thresholds(run_dir) if (run_dir / runfiles.THRESHOLDS).is_file() else None

        return lookup, None
    run_dir = runfiles.resolve_run_dir(run)
    thresholds = runfiles.read_thresholds(run_dir)
    return (lambda _version: thresholds), runfiles.read_json(run_dir / runfiles.MODEL).get("version")


def _sampling(review, fallback: Sampling) -> Sampling:
    stored = getattr(review, "sampling", None)
    return fallback if stored is None else stored


def _strata(reviews: list, categories: list[str], lookup: ThresholdsLookup, fallback: Sampling) -> dict[str, dict]:
    """Per category: final labels (None for an undecided or unjudged item) of the items the model flagged at
    "review" / "block" and of the random-sample items, with the weights (posts each item stands for) of the
    two sampled strata."""
    out = {c: {REVIEW: [], BLOCK: [], "block_weight": [], RANDOM: [], "random_weight": []}
           for c in categories}
    for review in reviews:
        thresholds = lookup(review.model_version)
        rates = _sampling(review, fallback)
        final = review.decisions[-1] if review.decisions else None
        for c in categories:
            if c not in review.scores or c not in thresholds.categories:
                continue
            label = reviewer_label(final, c) if final else None
            s = out[c]
            if review.reason == RANDOM:
                s[RANDOM].append(label)
                s["random_weight"].append(1.0 / rates.random_review_rate)
                continue
            action = thresholds[c].action(review.scores[c]["fused"])
            if action != Action.ALLOW:
                s[action.value].append(label)
            if action == Action.BLOCK:  # None: no block sample was in force, so the item counts as flagged
                s["block_weight"].append(1.0 / rates.block_review_rate if rates.block_review_rate > 0 else None)
    return out


def _precision(labels: list) -> dict:
    judged = [x for x in labels if x is not None]
    return {"items": len(labels), "judged": len(judged), "confirmed": int(sum(judged)),
            "precision": wilson_interval(int(sum(judged)), len(judged))}


def _share_draws(labels: list, rng: np.random.Generator, n_draws: int) -> tuple[float, np.ndarray] | None:
    judged = [x for x in labels if x is not None]
    if not judged:
        return None
    k, n = sum(judged), len(judged)
    return k / n, rng.beta(k + 0.5, n - k + 0.5, size=n_draws)


def _blocked_caught(blocked: int, block_sample: list, stands_for: float, rng, n_draws: int) -> tuple[float, np.ndarray]:
    """Positives caught by outright blocks (point estimate, posterior draws): the count given from outside the
    queue, plus the block sample's share positive scaled to the `stands_for` blocked posts it represents."""
    point, draws = float(blocked), np.full(n_draws, float(blocked))
    share = _share_draws(block_sample, rng, n_draws) if block_sample else None
    if share is not None:
        point, draws = point + stands_for * share[0], draws + stands_for * share[1]
    return point, draws


def _recall(flagged: list, sampled: list, stands_for: float, blocked: tuple[float, np.ndarray], rng,
            n_draws: int) -> dict:
    """The recall estimate of the module docstring (`stands_for`: allowed posts the random sample represents);
    `estimate` is None when a stratum has no judged item."""
    # Nothing flagged is a known zero; nothing sampled says nothing about misses, so it leaves recall unknown.
    caught_share = _share_draws(flagged, rng, n_draws) if flagged else (0.0, np.zeros(n_draws))
    sampled_share = _share_draws(sampled, rng, n_draws)
    out = {"flagged_items": len(flagged), "flagged_judged": sum(x is not None for x in flagged),
           "flagged_positive": int(sum(x for x in flagged if x)), "random_items": len(sampled),
           "random_judged": sum(x is not None for x in sampled), "random_positive": int(sum(x for x in sampled if x)),
           "blocked_caught": blocked[0], "estimated_caught": None, "estimated_missed": None, "estimate": None}
    if caught_share is None or sampled_share is None:
        return out
    caught = len(flagged) * caught_share[0] + blocked[0]
    missed = stands_for * sampled_share[0]
    out["estimated_caught"], out["estimated_missed"] = caught, missed
    if caught + missed == 0:
        return out
    draws_caught = len(flagged) * caught_share[1] + blocked[1]
    draws = draws_caught / (draws_caught + stands_for * sampled_share[1])
    out["estimate"] = {**percentile_interval(caught / (caught + missed), draws, CONFIDENCE), "method": "jeffreys"}
    return out


def _class_quality(s: dict, blocked: int, rng, n_draws: int) -> dict:
    precision = {**{k: _precision(s[k]) for k in KINDS}, "flagged": _precision(s[REVIEW] + s[BLOCK])}
    # Block-level items sampled at a known rate are their own stratum, scaled by it; the others (no block
    # sample in force) are counted as flagged like review-band items.
    sampled_blocks = [x for x, w in zip(s[BLOCK], s["block_weight"]) if w is not None]
    unsampled_blocks = [x for x, w in zip(s[BLOCK], s["block_weight"]) if w is None]
    caught = _blocked_caught(blocked, sampled_blocks, sum(w for w in s["block_weight"] if w is not None), rng, n_draws)
    recall = _recall(s[REVIEW] + unsampled_blocks, s[RANDOM], sum(s["random_weight"]), caught, rng, n_draws)
    return {"precision": precision, "recall": recall}


def cohen_kappa(first: list[int], second: list[int]) -> float | None:
    """Cohen's kappa of two raters' 0/1 labels on the same items; None when chance agreement is 1 (undefined).

    >>> cohen_kappa([1, 1, 0, 0], [1, 0, 0, 0])
    0.5
    """
    a, b = np.asarray(first, float), np.asarray(second, float)
    if len(a) == 0:
        return None
    observed = float(np.mean(a == b))
    chance = float(a.mean() * b.mean() + (1 - a.mean()) * (1 - b.mean()))
    return None if chance >= 1.0 else (observed - chance) / (1.0 - chance)


def _agreement(pairs: list[tuple[Any, Any]]) -> dict:
    agree = sum(x == y for x, y in pairs)
    return {"pairs": len(pairs), "agree": agree, "percent_agreement": wilson_interval(agree, len(pairs)),
            "kappa": cohen_kappa([x for x, _ in pairs], [y for _, y in pairs])}


def _second_opinions(reviews: list) -> list[tuple]:
    """(first, second) decisions by two different reviewers, for every item decided at least twice."""
    out = []
    for review in reviews:
        first = review.decisions[0] if review.decisions else None
        second = next((d for d in review.decisions[1:] if d.reviewer != first.reviewer), None) if first else None
        if second is not None:
            out.append((first, second))
    return out


def _agreements(doubles: list[tuple], categories: list[str]) -> dict:
    by_class = {}
    for c in categories:
        pairs = [(reviewer_label(a, c), reviewer_label(b, c)) for a, b in doubles]
        by_class[c] = _agreement([(x, y) for x, y in pairs if x is not None and y is not None])
    actions = [(int(a.action == Action.BLOCK), int(b.action == Action.BLOCK)) for a, b in doubles]
    return {"classes": by_class, "action": _agreement(actions)}


def _collect(queue, lookup: ThresholdsLookup, model_version: str | None) -> tuple[list, dict]:
    source = queue.reviews() if hasattr(queue, "reviews") else queue
    kept, skipped = [], {}
    for review in source:
        other_version = model_version is not None and review.model_version != model_version
        if other_version or lookup(review.model_version) is None:
            skipped[review.model_version] = skipped.get(review.model_version, 0) + 1
            continue
        kept.append(review)
    return kept, skipped


def _sampling_summary(reviews: list, fallback: Sampling) -> dict:
    stored = [r.sampling for r in reviews if getattr(r, "sampling", None) is not None]
    return {"items_with_rates": len(stored), "items_assumed": len(reviews) - len(stored),
            "random_review_rates": sorted({x.random_review_rate for x in stored}),
            "block_review_rates": sorted({x.block_review_rate for x in stored}),
            "assumed": fallback.model_dump()}


def live_quality(queue, thresholds: Thresholds | ThresholdsLookup | None = None, *,
                 sample_rate: float = DEFAULT_SAMPLE_RATE, blocked: Mapping[str, int] | None = None,
                 model_version: str | None = None, n_draws: int = 2000, seed: int = 0,
                 block_sample_rate: float | None = None) -> dict:
    """Live precision, estimated recall and reviewer agreement per class (see the module docstring).

    `queue`: the review queue (anything with `reviews()`), or an iterable of `Review`-like records.
    `thresholds`: the `Thresholds` of the model that scored the items, a callable model_version -> those
    thresholds (None: skip that version's items; see `thresholds_for`), or None for the shipped default model.
    `sample_rate` / `block_sample_rate`: the service's random_review_rate / block_review_rate, used ONLY for
    items stored without the rates in force (older queues); None for block_sample_rate: no block sample.
    `blocked`: {category: posts blocked outright for it in the same window}, counted as caught.
    `model_version`: only items scored by it.
    """
    if not 0.0 < sample_rate <= 1.0:
        raise ValueError(f"sample_rate must be in (0, 1] (the service's random_review_rate), got {sample_rate!r}")
    if block_sample_rate is not None and not 0.0 < block_sample_rate <= 1.0:
        raise ValueError(f"block_sample_rate must be in (0, 1] (the service's block_review_rate), "
                         f"got {block_sample_rate!r}")
    fallback = Sampling(random_review_rate=sample_rate, block_review_rate=block_sample_rate or 0.0)
    if thresholds is None:
        lookup, _ = thresholds_for()
    else:
        lookup = thresholds if callable(thresholds) else (lambda _version: thresholds)
    reviews, skipped = _collect(queue, lookup, model_version)
    categories = list(dict.fromkeys(c for r in reviews for c in r.scores))  # the order items were scored in
    rng = np.random.default_rng(seed)
    strata = _strata(reviews, categories, lookup, fallback)
    doubles = _second_opinions(reviews)
    agreement = _agreements(doubles, categories)
    classes = {c: {**_class_quality(strata[c], int((blocked or {}).get(c, 0)), rng, n_draws),
                   "agreement": agreement["classes"][c]} for c in categories}
    by_reason: dict[str, int] = {}
    for r in reviews:
        by_reason[r.reason] = by_reason.get(r.reason, 0) + 1
    return {"items": {"total": len(reviews), "decided": sum(bool(r.decisions) for r in reviews),
                      "by_reason": by_reason, "decided_twice": len(doubles), "skipped_by_version": skipped},
            "sampling": _sampling_summary(reviews, fallback), "blocked_given": blocked is not None,
            "model_version": model_version, "classes": classes, "action_agreement": agreement["action"]}
