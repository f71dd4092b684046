"""The reviewer API's request and response bodies (pydantic), with the field docs the OpenAPI document shows.

Kept apart from the routes (`review_api`) so the wire format has one place to change, and so the routes
read as behaviour only. Conversions from the queue's records (`Item`, `Decision`, ...) live here too, next to
the shapes they fill.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from moderation.policy import Action, Thresholds, decide, suggested_labels

from .db import AuditEvent, Decision, Item
from .schemas import ClassThresholdsOut, thresholds_out

SCORE_FALLBACK = 0.5  # label suggestion when the item's model version has no known thresholds


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt field is an error, not silently ignored


class ModalityScores(BaseModel):
    fused: float = Field(description="the fused (text + image) probability the model acted on")
    text: float | None = Field(description="text-only probability; null when the post had no text")
    image: float | None = Field(description="image-only probability; null when the post had no image")


class SamplingOut(BaseModel):
    random_review_rate: float = Field(description="share of allowed posts the service sent to review")
    block_review_rate: float = Field(description="share of blocked posts the service also sent to review")


class DecisionOut(BaseModel):
    id: int
    item_id: int
    reviewer: str = Field(description="name of the API key that decided (or X-Reviewer with auth disabled)")
    action: Literal["allow", "block"]
    labels: dict[str, int] = Field(description="{category: 0|1}, only the categories the reviewer judged")
    note: str
    decided_at: datetime

    @classmethod
    def of(cls, decision: Decision) -> DecisionOut:
        return cls(**{name: getattr(decision, name) for name in cls.model_fields})


class ReviewItemOut(BaseModel):
    id: int = Field(description="the queue's item id (use it in the item URLs)")
    post_id: str = Field(description="the platform's post id")
    text: str | None = Field(description="the post's text; null for an image-only post")
    image_url: str | None = Field(description="URL of the post's image (needs the same API key); null if none")
    image_mime: str | None = Field(description="the image's MIME type, e.g. image/png")
    ocr_text: str | None = Field(None, description="the text read from the picture, as the model scored it; "
                                                 "null without a picture or OCR")
    scores: dict[str, ModalityScores] = Field(description="per category: fused, text-only and image-only scores")
    thresholds: dict[str, ClassThresholdsOut] | None = Field(
        description="the thresholds of the model version that scored the item, when the server knows them: "
                    "review and block per category, and whether the category may block (and if not, why)")
    drivers: list[str] | None = Field(
        description="the categories that drove the model's action, highest score first (empty for a random "
                    "sample of allowed posts); null when the thresholds are not known")
    suggested_labels: dict[str, int] = Field(
        description="the model's suggestion per category (1 = at or above its review threshold), to pre-fill")
    suggestion_rule: str = Field(description="how `suggested_labels` was derived")
    model_action: Action = Field(description="what the model decided")
    reason: str = Field(description="why the item is in the queue: review_band, random_sample, block_sample "
                                    "(moderation.policy.Reason)")
    sampling: SamplingOut | None = Field(
        description="the review sampling rates in force when the item was enqueued; null for older items")
    model_version: str
    priority: float = Field(description="higher is served first (severity x closeness to the block threshold)")
    status: Literal["pending", "claimed", "decided"]
    created_at: datetime
    claim_owner: str | None = Field(description="who holds the claim (may have expired; see lease_expires_at)")
    lease_expires_at: datetime | None
    decision: DecisionOut | None = Field(None, description="the decision, once decided (item detail only)")

    @classmethod
    def of(cls, item: Item, image_url: str | None, thresholds: Thresholds | None,
           decision: Decision | None = None) -> ReviewItemOut:
        fused = {c: s["fused"] for c, s in item.scores.items()}
        if thresholds is not None and not all(c in thresholds.categories for c in fused):
            thresholds = None  # another model's categories: showing some of them would mislead
        labels, rule = suggest_labels(fused, thresholds, item.model_version)
        drivers = None if thresholds is None else list(decide(fused, thresholds).drivers)
        return cls(
            id=item.id, post_id=item.post_id, text=item.text, image_url=image_url, image_mime=item.image_mime,
            ocr_text=item.ocr_text,
            scores=item.scores, thresholds=None if thresholds is None else thresholds_out(thresholds, fused),
            drivers=drivers, suggested_labels=labels, suggestion_rule=rule,
            sampling=None if item.sampling is None else SamplingOut(**item.sampling.model_dump()),
            model_action=item.action, reason=item.reason, model_version=item.model_version,
            priority=item.priority, status=item.status, created_at=item.created_at,
            claim_owner=item.claim_owner, lease_expires_at=item.lease_expires_at,
            decision=None if decision is None else DecisionOut.of(decision),
        )


def suggest_labels(fused: Mapping[str, float], thresholds: Thresholds | None,
                   model_version: str) -> tuple[dict[str, int], str]:
    """({category: 0|1}, rule): the policy's `suggested_labels` (1 at or above the review threshold).

    Items do not carry their thresholds, so they come from the server's lookup by model version; for a
    version it does not know (an old model), fall back to fused >= 0.5 and say so, so the page can show it.
    """
    if thresholds is not None:
        return suggested_labels(dict(fused), thresholds), "fused score >= the category's review threshold"
    labels = {c: int(s >= SCORE_FALLBACK) for c, s in fused.items()}
    return labels, f"fused score >= {SCORE_FALLBACK} (no thresholds known for model version {model_version!r})"


class PendingOut(BaseModel):
    items: list[ReviewItemOut] = Field(description="open items in the order claims serve them")
    limit: int
    offset: int


class ClaimIn(_Body):
    n: int = Field(1, ge=1, le=50, description="how many items to claim at once")
    lease_s: int | None = Field(None, ge=10, le=86_400,
                                description="claim length in seconds; default: the server's review_lease_s")
    category: str | None = Field(None, description="only items this category sent (or could have sent) to review: "
                                                   "its fused score at or above its review threshold")
    reason: Literal["review_band", "random_sample", "block_sample"] | None = Field(
        None, description="only items enqueued for this reason")
    since: AwareDatetime | None = Field(None, description="only items enqueued at or after this time")
    until: AwareDatetime | None = Field(None, description="only items enqueued before this time")


class ClaimOut(BaseModel):
    items: list[ReviewItemOut] = Field(description="the claimed items (empty when nothing is open)")
    lease_s: int = Field(description="the lease length that was applied")


class ExtendIn(_Body):
    lease_s: int | None = Field(None, ge=10, le=86_400,
                                description="new lease length from now, in seconds; default: review_lease_s")


class SecondReviewIn(_Body):
    note: str = Field("", max_length=10_000, description="why a second opinion is wanted (kept in the audit log)")


class DecisionIn(_Body):
    action: Literal["allow", "block"] = Field(description="the reviewer's decision on the post")
    labels: dict[str, Literal[0, 1]] = Field(
        default_factory=dict,
        description="{category: 0|1} for the categories the reviewer judged; categories left out stay unknown "
                    "(masked in training), never negatives")
    note: str = Field("", max_length=10_000, description="free text kept with the decision and the audit log")


class StatsOut(BaseModel):
    pending: int = Field(description="open items (pending, plus claims whose lease expired)")
    claimed: int = Field(description="items under a live claim")
    decided: int
    by_reason: dict[str, int] = Field(description="all items per enqueue reason")
    by_action: dict[str, int] = Field(description="decisions per reviewer action")
    oldest_pending_age_s: float | None = Field(description="age of the oldest open item; null when none")


class AuditEventOut(BaseModel):
    id: int
    event: str = Field(description="enqueued, claimed, lease_expired, released, lease_extended, decided, exported, ...")
    item_id: int | None
    actor: str
    at: datetime
    details: dict[str, Any]

    @classmethod
    def of(cls, event: AuditEvent) -> AuditEventOut:
        return cls(**{name: getattr(event, name) for name in cls.model_fields})


class ExportIn(_Body):
    since: AwareDatetime | None = Field(None, description="only decisions made at or after this time (with offset)")


class ReviewConfigOut(BaseModel):
    reviewer: str = Field(description="who the server thinks you are (the API key's name)")
    categories: list[str] = Field(description="the configured categories, in label-toggle order (keys 1..9)")
    auth_disabled: bool = Field(description="true in local development mode: no API keys are checked")
    lease_s: int = Field(description="the default claim length in seconds")
    undo_window_s: int = Field(description="how long after a decision its reviewer may undo it, in seconds")


class ErrorOut(BaseModel):
    detail: str = Field(description="what went wrong, naming the bad value and what was allowed")
