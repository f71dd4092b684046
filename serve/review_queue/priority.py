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

>>> compute_priority({"hate": {"fused": 0.8}}, {"hate": {"block": 0.8, "review": 0.5}}, {"hate": 2.0})
2.0
>>> round(compute_priority({"hate": {"fused": 0.5}}, {"hate": {"block": 0.8, "review": 0.5}}), 3)
0.5
"""

from __future__ import annotations

from collections.abc import Mapping

MIN_BAND = 0.01  # a category whose review and block thresholds coincide still gets a finite scale


def check_thresholds(thresholds: Mapping[str, Mapping[str, float]], categories: list[str]) -> None:
    """Raise ValueError unless every category has 0 <= review <= block <= 1."""
    for category in categories:
        if category not in thresholds:
            raise ValueError(f"thresholds: no entry for category {category!r} (have: {sorted(thresholds)})")
        entry = thresholds[category]
        block, review = entry.get("block"), entry.get("review")
        if not all(isinstance(v, (int, float)) for v in (block, review)) or not 0 <= review <= block <= 1:
            raise ValueError(f"thresholds[{category!r}] = {dict(entry)!r}: expected 0 <= review <= block <= 1")


def compute_priority(
    scores: Mapping[str, Mapping[str, float | None]],
    thresholds: Mapping[str, Mapping[str, float]],
    severities: Mapping[str, float] | None = None,
) -> float:
    """Priority of an item with these fused scores (see the module docstring for the formula)."""
    categories = list(scores)
    check_thresholds(thresholds, categories)
    severities = severities or {}
    best = 0.0
    for category in categories:
        fused = scores[category]["fused"]
        block, review = thresholds[category]["block"], thresholds[category]["review"]
        band = max(block - review, MIN_BAND)
        closeness = 1.0 / (1.0 + abs(fused - block) / band)
        best = max(best, float(severities.get(category, 1.0)) * closeness)
    return best
