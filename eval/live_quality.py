"""Live quality from review outcomes: per-class precision, an estimate of recall, and reviewer agreement.

Owns how the review queue's decisions become quality estimates of the model in production (the
`moderation live-quality` command). It reads any object with a `reviews()` method yielding records shaped
like `serve.review_queue.Review` (item_id, scores, action, model_version, reason, decisions with reviewer,
action and labels) — `ReviewQueue` is one; this module never imports `serve`.

Per class c, with the model's per-class action re-derived from the item's fused score and the thresholds of
the model version that scored it (score >= block: block; >= review: review):

- Precision of review and block decisions: of the judged items the model flagged for c, the share the
  reviewer labelled c = 1, with a Wilson interval.
- Recall, estimated with the random sample of allowed posts (reason "random_sample", sent to review at a
  known rate r). Per stratum the share of judged items that are positive is scaled to every item in the
  stratum, decided or not (reviewers serve high-priority items first, so the decided share differs by stratum):

      caught  = flagged items x share positive among judged flagged items (+ posts blocked outside the queue)
      missed  = (random-sample items x share positive among judged random-sample items) / r
      recall  = caught / (caught + missed)

  The interval takes percentiles over draws of both shares from their Jeffreys posteriors, Beta(k+1/2, n-k+1/2),
  holding the item counts fixed. Assumptions: r is the rate the service used for the whole window; every post
  the model sent to review was enqueued; judged items are like undecided ones in the same stratum; posts the
  model blocked outright never reach the queue, so unless `blocked` gives their count per class (e.g. from
  the prediction log) caught is understated, and recall with it.
- Agreement: on items decided twice (`ReviewQueue.request_second_review`), per class the share of items
  where the first two reviewers gave the same label, and Cohen's kappa (agreement beyond chance).

Which label an item has: the latest decision's (as in training exports). A decision's labels hold only the
classes the reviewer judged; an "allow" decision counts as c = 0 for every class it does not label (letting
a post through says it is not harmful in any way), a "block" decision leaves unlabelled classes unknown.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from .audit_report import NA, pct
from .intervals import CONFIDENCE, percentile_interval, wilson_interval

log = logging.getLogger(__name__)

RANDOM_SAMPLE = "random_sample"
DEFAULT_SAMPLE_RATE = 0.01  # the serving default (serve.settings random_review_rate)
KINDS = ("review", "block")
Thresholds = Mapping[str, Mapping[str, float]]


def reviewer_label(decision, category: str) -> int | None:
    """The decision's label for `category`: given, else 0 for an "allow" decision, else unknown (None)."""
    value = decision.labels.get(category)
    if value is not None:
        return int(value)
    return 0 if decision.action == "allow" else None


def model_action(score: float, threshold: Mapping[str, float]) -> str:
    if score >= threshold["block"]:
        return "block"
    return "review" if score >= threshold["review"] else "allow"


def _thresholds_lookup(thresholds) -> Callable[[str], Thresholds | None]:
    if thresholds is None:
        from moderation import runfiles

        thresholds = runfiles.read_thresholds(runfiles.DEFAULT_MODEL_DIR)
    return thresholds if callable(thresholds) else (lambda _version: thresholds)


def _strata(reviews: list, categories: list[str], lookup) -> dict[str, dict[str, list]]:
    """Per category: items flagged at "review" / "block" and random-sample items, as lists of final labels
    (None for an undecided or unjudged item)."""
    out = {c: {"review": [], "block": [], RANDOM_SAMPLE: []} for c in categories}
    for review in reviews:
        threshold = lookup(review.model_version)
        final = review.decisions[-1] if review.decisions else None
        for c in categories:
            if c not in review.scores or c not in threshold:
                continue
            label = reviewer_label(final, c) if final else None
            if review.reason == RANDOM_SAMPLE:
                out[c][RANDOM_SAMPLE].append(label)
                continue
            action = model_action(review.scores[c]["fused"], threshold[c])
            if action != "allow":
                out[c][action].append(label)
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


def _blocked_caught(blocked: int, block_sample: list, block_sample_rate: float | None, rng,
                    n_draws: int) -> tuple[float, np.ndarray]:
    """Positives caught by outright blocks (point estimate, posterior draws): the count given from outside the
    queue, plus — when the service sent blocked posts to review at `block_sample_rate` — that sample's share
    positive scaled to every blocked post it stands for."""
    point, draws = float(blocked), np.full(n_draws, float(blocked))
    if block_sample_rate is not None and block_sample:
        share = _share_draws(block_sample, rng, n_draws)
        if share is not None:
            scale = len(block_sample) / block_sample_rate
            point, draws = point + scale * share[0], draws + scale * share[1]
    return point, draws


def _recall(flagged: list, sampled: list, sample_rate: float, blocked: tuple[float, np.ndarray], rng,
            n_draws: int) -> dict:
    """The recall estimate of the module docstring; `estimate` is None when a stratum has no judged item."""
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
    missed = len(sampled) * sampled_share[0] / sample_rate
    out["estimated_caught"], out["estimated_missed"] = caught, missed
    if caught + missed == 0:
        return out
    draws_caught = len(flagged) * caught_share[1] + blocked[1]
    draws = draws_caught / (draws_caught + len(sampled) * sampled_share[1] / sample_rate)
    out["estimate"] = {**percentile_interval(caught / (caught + missed), draws, CONFIDENCE), "method": "jeffreys"}
    return out


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
    actions = [(int(a.action == "block"), int(b.action == "block")) for a, b in doubles]
    return {"classes": by_class, "action": _agreement(actions)}


def _collect(queue, lookup, model_version: str | None) -> tuple[list, dict]:
    source = queue.reviews() if hasattr(queue, "reviews") else queue
    kept, skipped = [], {}
    for review in source:
        other_version = model_version is not None and review.model_version != model_version
        if other_version or lookup(review.model_version) is None:
            skipped[review.model_version] = skipped.get(review.model_version, 0) + 1
            continue
        kept.append(review)
    return kept, skipped


def live_quality(queue, thresholds: Thresholds | Callable[[str], Thresholds | None] | None = None, *,
                 sample_rate: float = DEFAULT_SAMPLE_RATE, blocked: Mapping[str, int] | None = None,
                 model_version: str | None = None, n_draws: int = 2000, seed: int = 0,
                 block_sample_rate: float | None = None) -> dict:
    """Live precision, estimated recall and reviewer agreement per class (see the module docstring).

    `queue`: a `ReviewQueue` (anything with `reviews()`), or an iterable of `Review`-like records.
    `thresholds`: {category: {"block", "review"}} of the model that scored the items, a callable
    model_version -> those thresholds (None: skip that version's items), or None for the shipped default model.
    `sample_rate`: the service's random_review_rate over the window. `blocked`: {category: posts blocked
    outright for it in the same window}, counted as caught. `model_version`: only items scored by it.
    `block_sample_rate`: the service's block_review_rate, when it sent a sample of blocked posts to review
    (reason "block_sample"); those items then estimate block precision and the caught blocked positives.
    """
    if not 0.0 < sample_rate <= 1.0:
        raise ValueError(f"sample_rate must be in (0, 1] (the service's random_review_rate), got {sample_rate!r}")
    if block_sample_rate is not None and not 0.0 < block_sample_rate <= 1.0:
        raise ValueError(f"block_sample_rate must be in (0, 1] (the service's block_review_rate), got {block_sample_rate!r}")
    lookup = _thresholds_lookup(thresholds)
    reviews, skipped = _collect(queue, lookup, model_version)
    categories = list(dict.fromkeys(c for r in reviews for c in r.scores))  # the order items were scored in
    rng = np.random.default_rng(seed)
    strata = _strata(reviews, categories, lookup)
    doubles = _second_opinions(reviews)
    agreement = _agreements(doubles, categories)
    classes = {}
    for c in categories:
        s = strata[c]
        precision = {**{k: _precision(s[k]) for k in KINDS}, "flagged": _precision(s["review"] + s["block"])}
        # With a block sample the blocked posts are their own stratum, scaled by its rate; without one, any
        # block-level items in the queue are counted as flagged like review-band items.
        flagged = s["review"] if block_sample_rate is not None else s["review"] + s["block"]
        caught_by_blocks = _blocked_caught(int((blocked or {}).get(c, 0)), s["block"], block_sample_rate, rng, n_draws)
        classes[c] = {"precision": precision,
                      "recall": _recall(flagged, s[RANDOM_SAMPLE], sample_rate, caught_by_blocks, rng, n_draws),
                      "agreement": agreement["classes"][c]}
    by_reason: dict[str, int] = {}
    for r in reviews:
        by_reason[r.reason] = by_reason.get(r.reason, 0) + 1
    return {"items": {"total": len(reviews), "decided": sum(bool(r.decisions) for r in reviews),
                      "by_reason": by_reason, "decided_twice": len(doubles), "skipped_by_version": skipped},
            "sample_rate": sample_rate, "blocked_given": blocked is not None, "model_version": model_version,
            "classes": classes, "action_agreement": agreement["action"]}


def _count_line(p: Mapping) -> str:
    if not p["items"]:
        return "none flagged"
    return f"{pct(p['precision'])} ({p['confirmed']} of {p['judged']} judged; {p['items']} flagged)"


def _recall_cell(r: Mapping) -> str:
    if r["estimate"] is None:
        return f"{NA} (judged: {r['flagged_judged']} flagged, {r['random_judged']} random-sample)"
    return (f"{pct(r['estimate'])} (caught ≈ {r['estimated_caught']:.0f}, missed ≈ {r['estimated_missed']:.0f}; "
            f"{r['random_positive']} harmful of {r['random_judged']} judged random-sample posts)")


def _kappa(a: Mapping) -> str:
    if not a["pairs"]:
        return NA
    kappa = NA if a["kappa"] is None else f"{a['kappa']:.2f}"
    return f"{pct(a['percent_agreement'])} agree, kappa {kappa} ({a['pairs']} items)"


def render_live_quality(result: Mapping) -> str:
    """The markdown report of `live_quality` output."""
    items = result["items"]
    lines = ["# Live quality from review outcomes", "",
             f"- Items: {items['total']} in the queue, {items['decided']} decided, {items['decided_twice']} decided "
             f"twice; by reason: {', '.join(f'{k} {v}' for k, v in sorted(items['by_reason'].items())) or 'none'}.",
             f"- Random-sample rate assumed: {result['sample_rate']:g} of allowed posts.",
             f"- Model version: {result['model_version'] or 'all versions with known thresholds'}"
             + (f"; skipped {items['skipped_by_version']}" if items["skipped_by_version"] else "") + ".",
             "", "## How often reviewers confirm the model", "",
             "Of the posts the model flagged for a class and a reviewer judged, the share the reviewer agreed was "
             "harmful in that class. Brackets: 95% Wilson intervals.", "",
             "| category | review precision | block precision | any flag | estimated recall | reviewer agreement |",
             "|---|---|---|---|---|---|"]
    for c, row in result["classes"].items():
        p = row["precision"]
        lines.append(f"| {c} | {_count_line(p['review'])} | {_count_line(p['block'])} | {_count_line(p['flagged'])} | "
                     f"{_recall_cell(row['recall'])} | {_kappa(row['agreement'])} |")
    lines += ["", f"Agreement on the action (allow / block): {_kappa(result['action_agreement'])}.", "",
              "## How recall is estimated", "",
              "caught = flagged posts × share harmful among judged flagged posts"
              + (" + posts blocked outright" if result["blocked_given"] else "")
              + "; missed = random-sample posts × share harmful among judged ones ÷ sample rate; "
              "recall = caught ÷ (caught + missed). It assumes the sample rate held for the whole window, that "
              "judged posts are like undecided ones, and that an allow decision means no harm of any kind."]
    if not result["blocked_given"]:
        lines.append("Posts blocked outright never reach the queue and were not given, so they are not counted as "
                     "caught: recall is understated wherever the model blocks posts.")
    return "\n".join(lines) + "\n"
