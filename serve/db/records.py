"""The review queue's records (what goes in, what comes out), its errors, and the checks on reviewer input.

Plain frozen dataclasses with no database types in them, so the reviewer page and the Ray Serve app can use
them without knowing which engine is underneath.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from moderation.policy import Action, Reason, Sampling

MODEL_ACTIONS = tuple(a.value for a in Action)  # what the model decided when the item was enqueued
REVIEW_ACTIONS = (Action.ALLOW.value, Action.BLOCK.value)  # what a reviewer may decide
REASONS = tuple(r.value for r in Reason)
STATUSES = ("pending", "claimed", "decided")
MODALITIES = ("fused", "text", "image")  # keys of one category's entry in `scores`


class ReviewQueueError(Exception):
    """Base class of the queue's own errors (bad input raises ValueError instead)."""


class QueueUnavailable(ReviewQueueError):
    """The queue cannot be written and read back, or its SQLite file was removed or replaced while serving
    (the service answers 503 and reports not ready; it never recreates the file, which would lose items)."""


class ItemNotFound(ReviewQueueError, KeyError):
    """No item has the given id."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else "item not found"


class ClaimError(ReviewQueueError):
    """The reviewer does not hold a live claim on the item (never claimed, claimed by someone else, lease
    expired, or already decided); the message says which."""


@dataclass(frozen=True)
class NewItem:
    """A post the moderation service sends to human review."""

    post_id: str  # the platform's id; enqueue is idempotent on it
    scores: Mapping[str, Mapping[str, float | None]]  # {category: {"fused": s, "text": s|None, "image": s|None}}
    action: str  # the model's action: allow | review | block
    model_version: str
    reason: str = Reason.REVIEW_BAND.value  # why it is here: a moderation.policy.Reason value
    text: str | None = None
    image: bytes | None = None
    image_mime: str | None = None  # e.g. "image/png"; required with `image`
    sampling: Sampling | None = None  # the review sampling rates in force when it was enqueued
    ocr_text: str | None = None  # the text read from the picture, shown to reviewers as evidence

    def __post_init__(self) -> None:
        if not isinstance(self.post_id, str) or not self.post_id:
            raise ValueError(f"post_id must be a non-empty string, got {self.post_id!r}")
        if isinstance(self.reason, Reason):  # stored as its value; the enum is accepted for convenience
            object.__setattr__(self, "reason", self.reason.value)
        if isinstance(self.action, Action):
            object.__setattr__(self, "action", self.action.value)
        if not self.reason:
            raise ValueError(f"reason must be a non-empty string, one of {list(REASONS)}")
        if self.sampling is not None and not isinstance(self.sampling, Sampling):
            raise ValueError(f"sampling must be a moderation.policy.Sampling or None, got {self.sampling!r}")
        if self.action not in MODEL_ACTIONS:
            raise ValueError(f"action {self.action!r} is not one of {list(MODEL_ACTIONS)}")
        if not (self.text and self.text.strip()) and self.image is None:
            raise ValueError(f"post {self.post_id!r} has neither text nor image; a reviewer would see nothing")
        if self.image is not None and not (self.image_mime or "").startswith("image/"):
            raise ValueError(f"post {self.post_id!r}: image_mime {self.image_mime!r} must be an image/* type")
        check_scores(self.scores)


def check_scores(scores: Mapping[str, Mapping[str, Any]]) -> None:
    """Raise ValueError unless every category has a fused score in [0, 1] (text/image scores may be None)."""
    if not scores:
        raise ValueError("scores is empty; expected {category: {'fused': s, 'text': s|None, 'image': s|None}}")
    for category, entry in scores.items():
        if not isinstance(entry, Mapping):
            raise ValueError(f"scores[{category!r}] = {entry!r}: expected {{'fused': s, 'text': s, 'image': s}}")
        unknown = set(entry) - set(MODALITIES)
        if unknown:
            raise ValueError(f"scores[{category!r}]: unknown key(s) {sorted(unknown)} (allowed: {list(MODALITIES)})")
        for modality in MODALITIES:
            value = entry.get(modality)
            if value is None and modality != "fused":
                continue
            if not isinstance(value, (int, float)) or not (0.0 <= value <= 1.0) or math.isnan(value):
                raise ValueError(f"scores[{category!r}][{modality!r}] = {value!r}: expected a number in [0, 1]")


def check_labels(labels: Mapping[str, Any], categories: Sequence[str]) -> dict[str, int]:
    """Return the labels as {category: 0|1}; raise ValueError naming the first unknown category or bad value.

    Only categories the reviewer actually decided are present: an absent category stays *unknown*.
    """
    if not isinstance(labels, Mapping):
        raise ValueError(f"labels must be a mapping {{category: 0|1}}, got {type(labels).__name__}")
    clean = {}
    for category, value in labels.items():
        if category not in categories:
            raise ValueError(f"labels: unknown category {category!r} (configured: {list(categories)})")
        # bool is an int subclass; True/False are accepted as 1/0, but 1.0 or "1" are not labels.
        if isinstance(value, bool) or (isinstance(value, int) and value in (0, 1)):
            clean[category] = int(value)
        else:
            raise ValueError(f"labels[{category!r}] = {value!r}: expected 0 or 1")
    return clean


@dataclass(frozen=True)
class Item:
    id: int
    post_id: str
    text: str | None
    image: bytes | None = field(repr=False)
    image_mime: str | None
    scores: dict[str, dict[str, float | None]]
    action: str  # the model's action
    model_version: str
    priority: float
    status: str  # pending | claimed | decided (a claim whose lease expired reads "claimed" until re-claimed)
    reason: str
    created_at: datetime
    claim_owner: str | None
    lease_expires_at: datetime | None
    sampling: Sampling | None = None  # rates in force at enqueue; None for items from before they were stored
    ocr_text: str | None = None  # the text read from the picture (None without one, or before migration 0005)


@dataclass(frozen=True)
class Decision:
    id: int
    item_id: int
    reviewer: str
    action: str  # allow | block
    labels: dict[str, int]  # only the categories the reviewer decided
    note: str
    decided_at: datetime


@dataclass(frozen=True)
class Review:
    """An item as live-quality estimates read it: what the model said, and every reviewer's decision (if any)."""

    item_id: int
    post_id: str
    scores: dict[str, dict[str, float | None]]  # {category: {"fused", "text", "image"}} at enqueue time
    action: str  # the model's action: allow | review | block
    model_version: str
    reason: str  # why it was queued: a moderation.policy.Reason value
    created_at: datetime
    decisions: tuple[Decision, ...]  # oldest first; () while undecided, 2+ after a second opinion
    sampling: Sampling | None = None  # rates in force at enqueue; None for items from before they were stored


@dataclass(frozen=True)
class AuditEvent:
    id: int
    # enqueued | enqueue_duplicate | claimed | lease_expired | released | lease_extended | decided
    # | second_review_requested | exported
    event: str
    item_id: int | None
    actor: str
    at: datetime
    details: dict[str, Any]
