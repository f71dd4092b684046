"""Request and response bodies of the moderation API (they make up its OpenAPI document)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field

from moderation.policy import Action, ClassThresholds, Reason, Thresholds


class PostIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1, max_length=255, description="the platform's post id (at most 255 characters, the "
                    "review queue's column; no NUL characters); review enqueue is idempotent on it")
    text: str | None = Field(None, description="the post's text")
    image_base64: str | None = Field(None, description="the post's image, base64-encoded (JPEG, PNG, GIF, WebP, BMP)")


class ModerateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    posts: list[PostIn] = Field(min_length=1, description="posts to score (at most max_posts_per_request)")


class CategoryResult(BaseModel):
    score: float = Field(description="fused probability")
    text_score: float | None = Field(description="text-only probability (null without text)")
    image_score: float | None = Field(description="image-only probability (null without an image)")
    action: Action = Field(description="allow | review | block for this category alone")
    modality: Literal["text", "image"] | None = Field(
        None, description="which modality drove this category: the one whose own score is higher (the only one "
                          "a single-modality post has)")


class PostResult(BaseModel):
    id: str
    action: Action = Field(description="allow | review | block")
    reason: Reason = Field(description="why the post got its action: block_threshold | review_band | "
                                       "random_sample | below_thresholds (moderation.policy.Reason)")
    drivers: list[str] = Field(description="categories that drove the action, highest score first")
    categories: dict[str, CategoryResult]
    review_item_id: int | None = Field(None, description="the review-queue item, when sent to review")
    ocr_text: str | None = Field(None, description="the text read from the post's picture (null without a picture, "
                                                 "or for a model that reads no text in pictures)")


class ModerateResponse(BaseModel):
    model_version: str
    elapsed_ms: float = Field(description="server-side time for the whole request")
    results: list[PostResult]


class ClassThresholdsOut(ClassThresholds):
    """A category's thresholds as the policy reads them, with whether it may block and, if not, why."""

    @computed_field(description="false for a class that never blocks (zero-shot, or its block target was not met)")
    @property
    def may_block(self) -> bool:
        return ClassThresholds.may_block.fget(self)

    @computed_field(description="why the class never blocks (it sends to review at most); null when it may block")
    @property
    def no_block_reason(self) -> str | None:
        return ClassThresholds.no_block_reason.fget(self)

    @classmethod
    def of(cls, thresholds: ClassThresholds) -> ClassThresholdsOut:
        return cls.model_validate(thresholds.model_dump())


def thresholds_out(thresholds: Thresholds, categories=None) -> dict[str, ClassThresholdsOut]:
    """{category: ClassThresholdsOut} of `categories` (default: all of them)."""
    names = thresholds.categories if categories is None else [c for c in categories if c in thresholds.categories]
    return {c: ClassThresholdsOut.of(thresholds[c]) for c in names}


class ModelInfo(BaseModel):
    model_version: str
    categories: list[str]
    modalities: list[str]
    thresholds: dict[str, ClassThresholdsOut] = Field(description="per category: review and block thresholds, how "
                                                                  "it is scored, and whether it may block")
    never_block: dict[str, str] = Field(description="{category: why} for the classes that never block: "
                                                    "they send to review at most")

    @classmethod
    def of(cls, model_version: str, categories: list[str], modalities: list[str], thresholds: Thresholds) -> ModelInfo:
        return cls(model_version=model_version, categories=categories, modalities=modalities,
                   thresholds=thresholds_out(thresholds, categories), never_block=thresholds.never_block())
