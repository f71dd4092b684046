"""The decision policy: per-category scores + the run's per-category thresholds -> allow / review / block.

Per category: a score at or above the block threshold blocks; at or above the review threshold (inside the
review band) goes to humans; below allows. The post's action is the most severe category action, and the
categories that drove it are named. A configurable random fraction of allowed posts is also sent to review
(`reason = "random_sample"`), so that live recall can be estimated from what reviewers find there.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from enum import Enum


class Action(str, Enum):
    ALLOW = "allow"
    REVIEW = "review"
    BLOCK = "block"


_SEVERITY = {Action.ALLOW: 0, Action.REVIEW: 1, Action.BLOCK: 2}


@dataclass
class Decision:
    action: Action
    categories: dict[str, Action]  # per-category action
    drivers: list[str]  # categories whose action equals the post's action (empty for allow), highest score first
    reason: str  # "threshold" | "random_sample" | "below_thresholds"
    review_requested: bool = field(init=False)

    def __post_init__(self) -> None:
        self.review_requested = self.action == Action.REVIEW


def category_action(score: float, block: float, review: float) -> Action:
    if score >= block:
        return Action.BLOCK
    if score >= review:
        return Action.REVIEW
    return Action.ALLOW


def decide(scores: dict[str, float], thresholds: dict[str, dict], random_review_rate: float = 0.0,
           rng: random.Random | None = None) -> Decision:
    """The action for one post. `thresholds[c]` has "block" and "review" (review <= block)."""
    missing = [c for c in scores if c not in thresholds]
    if missing:
        raise ValueError(f"no thresholds for categories {missing} (have {sorted(thresholds)})")
    per_category = {c: category_action(s, thresholds[c]["block"], thresholds[c]["review"]) for c, s in scores.items()}
    action = max(per_category.values(), key=_SEVERITY.__getitem__, default=Action.ALLOW)
    drivers = sorted((c for c, a in per_category.items() if a == action and action != Action.ALLOW),
                     key=lambda c: -scores[c])
    if action != Action.ALLOW:
        return Decision(action, per_category, drivers, "threshold")
    if random_review_rate > 0 and (rng or random).random() < random_review_rate:
        return Decision(Action.REVIEW, per_category, [], "random_sample")
    return Decision(Action.ALLOW, per_category, [], "below_thresholds")
