"""The decision policy: per-category scores + a model's thresholds -> allow / review / block, and why.

This is the one place the rule lives; serving, the reviewer page's label suggestions, live quality, drift and
the monitor all call it. It is a leaf of the library (pydantic and the standard library only) so any layer
may import it.

Per category c, with thresholds `review <= block`:

- a score at or above `block` blocks, but only when the class *may block*: it is trained (not zero-shot) and
  its block threshold met its targets on held-out data (precision, and where configured a false-block bound
  checked on enough sources). Otherwise that score sends to review: a threshold nobody could check must not
  take posts down on its own;
- a score in `[review, block)` goes to human review;
- below `review` allows.

The post's action is the most severe category action, and the categories that produced it are its
*drivers*, highest score first. Two random samples go to review as well, so reviewers can measure what
the thresholds alone cannot: a share of allowed posts (`random_sample`, for live recall) and a share of
blocked posts (`block_sample`, for live block precision; those stay blocked).

>>> t = Thresholds(categories={"hate": ClassThresholds(review=0.4, block=0.8, block_target_met=True)})
>>> d = decide({"hate": 0.9}, t)
>>> d.action, d.reason, d.drivers
(<Action.BLOCK: 'block'>, <Reason.BLOCK_THRESHOLD: 'block_threshold'>, ('hate',))
>>> decide({"hate": 0.5}, t).action
<Action.REVIEW: 'review'>
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

if TYPE_CHECKING:  # numpy only for the vectorised form; the policy itself needs nothing heavy
    import numpy as np


class Action(str, Enum):
    ALLOW = "allow"
    REVIEW = "review"
    BLOCK = "block"

    @property
    def severity(self) -> int:
        return _SEVERITY[self]


_SEVERITY = {Action.ALLOW: 0, Action.REVIEW: 1, Action.BLOCK: 2}


class Reason(str, Enum):
    """Why a post got its action, and why a post is in the review queue."""

    BLOCK_THRESHOLD = "block_threshold"  # a category at or above its block threshold
    REVIEW_BAND = "review_band"  # a category inside its review band (or above a block it may not use)
    RANDOM_SAMPLE = "random_sample"  # an allowed post sampled for review (live recall)
    BLOCK_SAMPLE = "block_sample"  # a blocked post also sent to review (live block precision); stays blocked
    BELOW_THRESHOLDS = "below_thresholds"  # allowed: every category below its review threshold


class Scoring(str, Enum):
    """How a class is scored: by the trained head, or zero-shot (no or too few training positives)."""

    TRAINED = "trained"
    ZERO_SHOT = "zero_shot"


class ClassThresholds(BaseModel):
    """One category's thresholds as the policy reads them, with what was measured when they were chosen."""

    model_config = ConfigDict(extra="forbid")

    review: float = Field(ge=0, le=1, description="fused score at or above which the category goes to review")
    block: float = Field(ge=0, le=1, description="fused score at or above which the category blocks "
                                                 "(only when `may_block`; otherwise it sends to review)")
    scoring: Scoring = Field(Scoring.TRAINED, description="trained head or zero-shot")
    block_target_met: bool | None = Field(
        None, description="whether `block` met its targets on held-out data: the block precision and, where "
                          "configured, a false-block bound checked on enough sources; null when it could not be "
                          "checked (no known positive)")
    source: Literal["validation", "cross_source", "default"] = Field(
        "validation", description="where the thresholds were chosen: the validation split, predictions on "
                                  "sources the model did not train on, or defaults (nothing to tune on)")
    measured: dict[str, float | int | bool | str | None] = Field(
        default_factory=dict, description="precision, recall, support ... achieved where they were chosen")

    @model_validator(mode="after")
    def _review_not_above_block(self) -> ClassThresholds:
        if self.review > self.block:
            raise ValueError(f"review threshold {self.review} is above the block threshold {self.block}")
        return self

    @property
    def may_block(self) -> bool:
        return self.scoring == Scoring.TRAINED and self.block_target_met is True

    @property
    def no_block_reason(self) -> str | None:
        """Why this class never blocks (None when it may): shown by the model card, /v1/model and the page."""
        if self.scoring == Scoring.ZERO_SHOT:
            return "scored zero-shot: sends to review at most"
        if self.block_target_met is None:
            return "block precision could not be checked (no known positive): sends to review at most"
        checked, needed = self.measured.get("block_sources_checked"), self.measured.get("target_min_block_sources")
        if not self.block_target_met and checked is not None and needed is not None and checked < needed:
            return (f"block threshold checked on {checked} source(s) with enough known negatives, {needed} needed: "
                    "sends to review at most")
        if not self.block_target_met:
            where = " on sources the model never trained on" if self.source == "cross_source" else ""
            return f"block threshold missed its precision target{where}: sends to review at most"
        return None

    def action(self, score: float) -> Action:
        if score >= self.block and self.may_block:
            return Action.BLOCK
        if score >= self.review:
            return Action.REVIEW
        return Action.ALLOW


class Thresholds(BaseModel):
    """A model's thresholds: the targets they were chosen for and one entry per category (`thresholds.json`)."""

    model_config = ConfigDict(extra="forbid")

    targets: dict[str, float] = Field(default_factory=dict,
                                      description="e.g. {block_precision: 0.9, review_recall: 0.8}")
    categories: dict[str, ClassThresholds]

    def __getitem__(self, category: str) -> ClassThresholds:
        try:
            return self.categories[category]
        except KeyError:
            raise KeyError(f"no thresholds for category {category!r} (have {sorted(self.categories)})") from None

    def check_covers(self, categories) -> None:
        missing = [c for c in categories if c not in self.categories]
        if missing:
            raise ValueError(f"no thresholds for categories {missing} (have {sorted(self.categories)})")

    def never_block(self) -> dict[str, str]:
        """{category: why} for the classes that never block."""
        return {c: t.no_block_reason for c, t in self.categories.items() if not t.may_block}


class Sampling(BaseModel):
    """The shares of posts sent to review beyond the thresholds (stored with each review item)."""

    model_config = ConfigDict(extra="forbid")

    random_review_rate: float = Field(0.0, ge=0, le=1, description="share of allowed posts sent to review")
    block_review_rate: float = Field(0.0, ge=0, le=1, description="share of blocked posts also sent to review")


NO_SAMPLING = Sampling()


@dataclass(frozen=True)
class Decision:
    """What the policy decided for one post."""

    action: Action
    reason: Reason  # why the post got `action`
    drivers: tuple[str, ...]  # categories whose action is the post's action (none for allow), highest score first
    category_actions: dict[str, Action]
    review_reason: Reason | None  # why the post goes to the review queue; None when it does not

    @property
    def to_review(self) -> bool:
        return self.review_reason is not None


def decide(scores: dict[str, float], thresholds: Thresholds, sampling: Sampling = NO_SAMPLING,
           rng: random.Random | None = None) -> Decision:
    """The action for one post from its fused score per category (see the module docstring)."""
    thresholds.check_covers(scores)
    per_category = {c: thresholds[c].action(s) for c, s in scores.items()}
    action = max(per_category.values(), key=lambda a: a.severity, default=Action.ALLOW)
    drivers = tuple(sorted((c for c, a in per_category.items() if a == action and action != Action.ALLOW),
                           key=lambda c: -scores[c]))
    draw = (rng or random).random
    if action == Action.BLOCK:
        sampled = sampling.block_review_rate > 0 and draw() < sampling.block_review_rate
        return Decision(action, Reason.BLOCK_THRESHOLD, drivers, per_category, Reason.BLOCK_SAMPLE if sampled else None)
    if action == Action.REVIEW:
        return Decision(action, Reason.REVIEW_BAND, drivers, per_category, Reason.REVIEW_BAND)
    if sampling.random_review_rate > 0 and draw() < sampling.random_review_rate:
        return Decision(Action.REVIEW, Reason.RANDOM_SAMPLE, (), per_category, Reason.RANDOM_SAMPLE)
    return Decision(Action.ALLOW, Reason.BELOW_THRESHOLDS, (), per_category, None)


def threshold_actions(categories: list[str], scores: np.ndarray, thresholds: Thresholds) -> np.ndarray:
    """`decide` without sampling for many posts at once: (N, C) fused scores -> (N,) array of Action values.

    Same rule, vectorised for drift and audits over hundreds of thousands of logged decisions.
    """
    import numpy as np

    thresholds.check_covers(categories)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1, len(categories))
    block = np.array([thresholds[c].block if thresholds[c].may_block else np.inf for c in categories])
    blocked = (scores >= block).any(axis=1)
    reviewed = ~blocked & flagging_classes(categories, scores, thresholds).any(axis=1)
    return np.where(blocked, Action.BLOCK.value, np.where(reviewed, Action.REVIEW.value, Action.ALLOW.value))


def flagging_classes(categories: list[str], scores: np.ndarray, thresholds: Thresholds) -> np.ndarray:
    """(N, C) fused scores -> (N, C) bool: which classes flag each post (send it to review or block it). A class
    flags at its review threshold; its block threshold is never below that, so blocking needs no second test."""
    import numpy as np

    thresholds.check_covers(categories)
    review = np.array([thresholds[c].review for c in categories])
    return np.asarray(scores, dtype=np.float64).reshape(-1, len(categories)) >= review


def suggested_labels(scores: dict[str, float], thresholds: Thresholds) -> dict[str, int]:
    """The model's label per category for a reviewer to confirm: 1 at or above the class's review threshold."""
    thresholds.check_covers(scores)
    return {c: int(s >= thresholds[c].review) for c, s in scores.items()}
