"""The review priority of an item: which post a reviewer should see first.

    priority = max over categories c of  severity[c] * closeness_c
    closeness_c = 1 / (1 + |fused_c - block_c| / band_c)
    band_c = max(block_c - review_c, MIN_BAND)

`closeness` is 1 when the fused score sits on the block threshold (where the model is least sure whether to
block) and falls smoothly with the distance from it, measured in widths of that category's review band (0.5
at the edge of the band), so categories with narrow and wide bands compare fairly. It is never 0, so
random-sample items far below the band are still ordered by how close they came. `severity` (from the
category config, default 1.0) lets a likely self-harm post jump ahead of a borderline insult. The queue
serves higher priority first, then the oldest.

>>> from moderation.policy import Thresholds
>>> t = Thresholds(categories={"hate": {"block": 0.8, "review": 0.5}})
>>> compute_priority({"hate": {"fused": 0.8}}, t, {"hate": 2.0})
2.0
>>> round(compute_priority({"hate": {"fused": 0.5}}, t), 3)
0.5

A class that may not block (zero-shot, or its block target missed) is still ordered by its block threshold:
that is where the model is least sure, whether or not the threshold acts on its own.
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import ValidationError

from moderation.policy import Thresholds

MIN_BAND = 0.01  # a category whose review and block thresholds coincide still gets a finite scale


def as_thresholds(thresholds: Thresholds | Mapping[str, Mapping[str, float]]) -> Thresholds:
    """`Thresholds` as they are, or a plain {category: {"review", "block"}} mapping validated into them."""
    if isinstance(thresholds, Thresholds):
        return thresholds
    try:
        return Thresholds.model_validate({"categories": {c: dict(t) for c, t in thresholds.items()}})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'][1:]))}: {e['msg']}" for e in exc.errors())
        raise ValueError(f"thresholds: {problems}") from None


def compute_priority(
    scores: Mapping[str, Mapping[str, float | None]],
    thresholds: Thresholds | Mapping[str, Mapping[str, float]],
    severities: Mapping[str, float] | None = None,
) -> float:
    """Priority of an item with these fused scores (see the module docstring for the formula)."""
    thresholds = as_thresholds(thresholds)
    thresholds.check_covers(scores)
    severities = severities or {}
    best = 0.0
    for category in scores:
        fused = scores[category]["fused"]
        block, review = thresholds[category].block, thresholds[category].review
        band = max(block - review, MIN_BAND)
        closeness = 1.0 / (1.0 + abs(fused - block) / band)
        best = max(best, float(severities.get(category, 1.0)) * closeness)
    return best
