"""Service settings: one typed schema, read from a YAML file and/or `MODERATION_*` environment variables.

Built-in defaults run the main job on a fresh machine: the shipped default model, local Ray, the embedded
SQLite review queue. API keys come from config or the environment; `auth: disabled` is a local development
mode that must be asked for explicitly and is announced on every response (`X-Auth-Disabled: true`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

Role = Literal["submitter", "reviewer", "admin"]


class ApiKey(BaseModel):
    model_config = ConfigDict(extra="forbid")
    key: str = Field(min_length=16, description="the secret; send as `Authorization: Bearer <key>` or `X-API-Key`")
    name: str
    roles: list[Role]


class ServeSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    run_dir: str | None = Field(None, description="run directory to serve; default: the shipped default model")
    registry_dir: str | None = Field(None, description="serve the registry's current model and take up promotions live")
    reload_check_s: float = Field(5.0, gt=0, description="how often replicas look for a newly promoted model")
    queue_url: str = Field("sqlite:///moderation-review.db", description="sqlite:///path or postgresql://...")
    host: str = "127.0.0.1"
    port: int = 8000
    # Batching: a replica never holds more than max_ongoing_requests, so it must be >= max_batch_size.
    max_batch_size: int = Field(32, ge=1)
    batch_wait_timeout_s: float = Field(0.01, ge=0)
    max_ongoing_requests: int = Field(64, ge=1)
    max_queued_requests: int = Field(256, ge=1, description="beyond this, requests get 503 + Retry-After")
    num_replicas: int = Field(1, ge=1)
    num_cpus_per_replica: float = Field(1.0, gt=0)
    use_gpu: Literal["auto", "yes", "no"] = "auto"
    random_review_rate: float = Field(0.01, ge=0, le=1, description="fraction of allowed posts sent to review")
    block_review_rate: float = Field(0.02, ge=0, le=1, description="fraction of blocked posts also sent to review "
                                     "(reason block_sample), so reviewers can measure block precision")
    review_lease_s: int = Field(300, ge=10)
    max_posts_per_request: int = Field(64, ge=1)
    max_text_chars: int = Field(20_000, ge=1)
    max_image_bytes: int = Field(10 * 2**20, ge=1)
    max_image_pixels: int = Field(40_000_000, ge=1)
    max_request_bytes: int = Field(32 * 2**20, ge=1)
    # Prediction log (serve.prediction_log): every decision with its scores, for drift monitoring.
    prediction_log: bool = Field(True, description="log every served decision (scores, action, model version)")
    prediction_log_url: str | None = Field(None, description="database of the log; default: queue_url's")
    log_content: bool = Field(False, description="also log each post's text and image (personal data: opt in)")
    retention_days: int = Field(30, ge=1, description="logged text/images are deleted after this many days")
    auth: Literal["required", "disabled"] = "required"
    api_keys: list[ApiKey] = []

    @property
    def log_url(self) -> str:
        """The prediction log's database: its own URL if set, else the review queue's (one database for both)."""
        return self.prediction_log_url or self.queue_url

    def check(self) -> None:
        if self.max_ongoing_requests < self.max_batch_size:
            raise ValueError(f"max_ongoing_requests ({self.max_ongoing_requests}) must be >= max_batch_size "
                             f"({self.max_batch_size}): a replica never holds more requests than that")
        if self.max_ongoing_requests + self.max_queued_requests < self.max_posts_per_request:
            raise ValueError(f"max_ongoing_requests + max_queued_requests ({self.max_ongoing_requests} + "
                             f"{self.max_queued_requests}) must be >= max_posts_per_request ({self.max_posts_per_request}): "
                             "each post of a request is one model call, so a full request could never be accepted")
        if self.run_dir and self.registry_dir:
            raise ValueError("give run_dir or registry_dir, not both")
        if self.log_content and not self.prediction_log:
            raise ValueError("log_content is on but prediction_log is off: content is only kept in the prediction "
                             "log, so turn prediction_log on or log_content off")
        if self.auth == "required" and not self.api_keys:
            raise ValueError("auth is required but no api_keys are configured: set MODERATION_API_KEYS "
                             "(name:role+role:key,...) or api_keys in the serve config, or auth: disabled for local use")


def _keys_from_env(value: str) -> list[dict]:
    """MODERATION_API_KEYS = "name:role+role:key,name2:role:key2"."""
    keys = []
    for item in filter(None, (v.strip() for v in value.split(","))):
        parts = item.split(":", 2)
        if len(parts) != 3:
            raise ValueError(f"MODERATION_API_KEYS entry {item.split(':')[0]!r}: expected name:roles:key")
        keys.append({"name": parts[0], "roles": parts[1].split("+"), "key": parts[2]})
    return keys


def load_settings(path: str | Path | None = None, **overrides) -> ServeSettings:
    """Settings from a YAML file (optional), then the environment, then explicit overrides."""
    tree: dict = {}
    if path:
        tree = yaml.safe_load(Path(path).read_text()) or {}
    env = os.environ
    for field in ("run_dir", "registry_dir", "queue_url", "auth", "host", "port", "use_gpu", "random_review_rate"):
        if f"MODERATION_{field.upper()}" in env:
            tree[field] = env[f"MODERATION_{field.upper()}"]
    if env.get("MODERATION_API_KEYS"):
        tree["api_keys"] = _keys_from_env(env["MODERATION_API_KEYS"])
    tree.update({k: v for k, v in overrides.items() if v is not None})
    try:
        settings = ServeSettings.model_validate(tree)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ValueError(f"serve settings{f' ({path})' if path else ''}: {problems}") from None
    settings.check()
    return settings
