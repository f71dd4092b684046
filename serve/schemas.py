"""Request and response bodies of the moderation API (they make up its OpenAPI document)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class PostIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1, max_length=256, description="the platform's post id; review enqueue is idempotent on it")
    text: str | None = Field(None, description="the post's text")
    image_base64: str | None = Field(None, description="the post's image, base64-encoded (JPEG, PNG, GIF, WebP, BMP)")


class ModerateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    posts: list[PostIn] = Field(min_length=1, description="posts to score (at most max_posts_per_request)")


class CategoryResult(BaseModel):
    score: float = Field(description="fused probability")
    text_score: float | None = Field(description="text-only probability (null without text)")
    image_score: float | None = Field(description="image-only probability (null without an image)")
    action: str = Field(description="allow | review | block for this category alone")


class PostResult(BaseModel):
    id: str
    action: str = Field(description="allow | review | block")
    reason: str = Field(description="threshold | random_sample | below_thresholds")
    drivers: list[str] = Field(description="categories that drove the action, highest score first")
    categories: dict[str, CategoryResult]
    review_item_id: int | None = Field(None, description="the review-queue item, when sent to review")


class ModerateResponse(BaseModel):
    model_version: str
    elapsed_ms: float = Field(description="server-side time for the whole request")
    results: list[PostResult]


class ModelInfo(BaseModel):
    model_version: str
    categories: list[str]
    modalities: list[str]
    thresholds: dict[str, dict]
