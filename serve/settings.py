"""Service settings: one typed schema (pydantic-settings), read from a YAML file and `MODERATION_*` variables.

Every field can be set from the environment as `MODERATION_<FIELD>` (e.g. `MODERATION_QUEUE_URL`,
`MODERATION_RANDOM_REVIEW_RATE=0.02`); API keys keep their compact form
`MODERATION_API_KEYS="name:role+role:key,name2:role:key2"`. Precedence, highest first: explicit overrides
(CLI flags), the environment, the YAML file, the defaults. `serve/serve_settings.example.yaml` documents
every field.

The cross-checks live in a model validator, so every way of building the settings (`load_settings`, the
constructor, `ServeSettings.model_validate` inside a replica) runs them. Built-in defaults run the main job on
a fresh machine: the shipped default model, local Ray, the embedded SQLite review queue. `auth: disabled` is a
local development mode that must be asked for explicitly and is announced on every response
(`X-Auth-Disabled: true`).
"""

from __future__ import annotations

from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

from moderation.policy import Sampling

Role = Literal["submitter", "reviewer", "admin"]
ENV_PREFIX = "MODERATION_"
NO_API_KEYS = "no_api_keys"  # the error type of "auth is required but no keys are configured"

_YAML_FILE: ContextVar[Path | None] = ContextVar("serve_settings_yaml", default=None)


class ApiKey(BaseModel):
    model_config = ConfigDict(extra="forbid")
    key: str = Field(min_length=16, description="the secret; send as `Authorization: Bearer <key>` or `X-API-Key`")
    name: str
    roles: list[Role]


class MissingApiKeys(ValueError):
    """Auth is required but no API keys are configured (`moderation serve` then makes a local admin key)."""


class ServeSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", validate_default=True)

    run_dir: str | None = Field(None, description="run directory to serve; default: the shipped default model")
    registry_dir: str | None = Field(None, description="serve the registry's current model and take up promotions live")
    reload_check_s: float = Field(5.0, gt=0, description="how often replicas look for a newly promoted model")
    queue_url: str = Field("sqlite:///moderation-review.db", description="sqlite:///path or postgresql://...")
    host: str = Field("127.0.0.1", description="HTTP address to listen on (moderation serve)")
    port: int = Field(8000, ge=1, le=65535, description="HTTP port (moderation serve)")
    # Batching: a replica never holds more than max_ongoing_requests, so it must be >= max_batch_size. These
    # two defaults are also the Scorer's @serve.batch defaults (serve.scorer), so they are set here only.
    max_batch_size: int = Field(32, ge=1, description="most posts scored in one model call")
    batch_wait_timeout_s: float = Field(0.01, ge=0, description="how long a batch waits to fill up")
    max_ongoing_requests: int = Field(64, ge=1, description="requests one Scorer replica holds at once")
    # Overload: queues hold under a second of work, sized from the measured capacity, so overload answers
    # 503 + Retry-After at once instead of making every client wait (`moderation bench serving` measures the
    # capacity). The client's budget is about 2 s end to end, and at 300 clients on 2 cores the HTTP proxy and
    # the hop to the ingress already take ~0.7 s (`moderation bench production`): hence 0.75 s of queue. The
    # deadline stays 2 s: text posts rarely reach it behind so short a queue, and at 1.5 s it shed image posts
    # (OCR: ~0.2 s each) at only 4 concurrent clients.
    capacity_posts_per_s: float = Field(40.0, gt=0, description="posts/s one Scorer replica scores, as measured "
                                        "on this hardware (moderation bench serving); sizes the queues")
    max_queue_s: float = Field(0.75, gt=0, description="seconds of queued work a Scorer replica may hold")
    max_queued_requests: int | None = Field(None, ge=1, description="posts queued per Scorer replica beyond those it "
                                            "holds; default capacity_posts_per_s * max_queue_s; beyond: 503 + Retry-After")
    request_deadline_s: float = Field(2.0, gt=0, description="a request not scored within this many seconds is "
                                      "dropped from the queue and answered 503 + Retry-After")
    # What a post costs, in typical posts (the unit capacity_posts_per_s is measured in, ~25 ms of a replica
    # here): 1, plus 1 per `chars_per_extra_post` characters, plus `image_post_cost` for a picture (OCR).
    # Measured in-process on 2 cores: a 20,000-character post takes ~600 ms (~26 typical posts: it fills
    # max_windows windows and the normaliser reads every character), a 1,000-character one ~53 ms; served, an
    # image post takes ~200 ms of the replica, 8 typical posts (1 + image_post_cost; at 9, 4 concurrent image
    # posts no longer fit the 32 in flight and saturation throughput halved). Admission counts this cost, so
    # one large request cannot fill the queue small ones wait in, and a request that could not be scored
    # within its deadline is refused with 413 instead of timing out.
    chars_per_extra_post: int = Field(800, ge=1, description="characters of text that cost one more typical post")
    image_post_cost: float = Field(7.0, ge=0, description="what a picture adds to a post's cost, in typical posts")
    body_timeout_s: float = Field(5.0, gt=0, description="a request body not received within this is cut off (408)")
    ingress_max_ongoing_requests: int = Field(2000, ge=1, description="connections one ingress replica holds; "
                                              "admission beyond it is by the queues above, so keep it large")
    shutdown_grace_s: float = Field(15.0, ge=0, description="on SIGTERM / Ctrl-C, how long requests in flight "
                                    "may take to finish before the service stops")
    num_replicas: int = Field(1, ge=1, description="Scorer replicas")
    ingress_replicas: int = Field(1, ge=1, description="HTTP ingress replicas (they share queue_url)")
    num_cpus_per_replica: float = Field(1.0, gt=0, description="CPUs Ray reserves per Scorer replica")
    use_gpu: Literal["auto", "yes", "no"] = Field("auto", description="auto: a GPU when torch sees one")
    random_review_rate: float = Field(0.01, ge=0, le=1, description="share of allowed posts sent to review "
                                      "(reason random_sample), so reviewers can estimate live recall")
    block_review_rate: float = Field(0.02, ge=0, le=1, description="share of blocked posts also sent to review "
                                     "(reason block_sample), so reviewers can measure block precision")
    review_lease_s: int = Field(300, ge=10, description="default length of a reviewer's claim, in seconds")
    max_posts_per_request: int = Field(64, ge=1)
    max_text_chars: int = Field(20_000, ge=1)
    max_image_bytes: int = Field(10 * 2**20, ge=1)
    max_image_pixels: int = Field(40_000_000, ge=1, description="decompression-bomb guard")
    max_request_bytes: int = Field(32 * 2**20, ge=1)
    # Prediction log (serve.db.prediction_log): every decision with its scores, for drift monitoring.
    prediction_log: bool = Field(True, description="log every served decision (scores, action, model version)")
    prediction_log_url: str | None = Field(None, description="database of the log; default: queue_url's")
    log_content: bool = Field(False, description="also log each post's text and image (personal data: opt in)")
    retention_days: int = Field(30, ge=1, description="logged text/images are deleted after this many days")
    auth: Literal["required", "disabled"] = Field("required", description="disabled: local development only")
    api_keys: Annotated[list[ApiKey], NoDecode] = Field(
        default_factory=list, description="API keys with roles; env MODERATION_API_KEYS=name:role+role:key,...")

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource) -> tuple:
        """Overrides, then the environment, then the YAML file `load_settings` was given (if any)."""
        from pydantic_settings import YamlConfigSettingsSource

        path = _YAML_FILE.get()
        sources: tuple = (init_settings, env_settings)
        if path is not None:
            sources += (YamlConfigSettingsSource(settings_cls, yaml_file=path),)
        return sources

    @field_validator("api_keys", mode="before")
    @classmethod
    def _keys_from_env(cls, value: Any) -> Any:
        return parse_api_keys(value) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _cross_checks(self) -> ServeSettings:
        if self.max_ongoing_requests < self.max_batch_size:
            raise ValueError(f"max_ongoing_requests ({self.max_ongoing_requests}) must be >= max_batch_size "
                             f"({self.max_batch_size}): a replica never holds more requests than that")
        if self.max_ongoing_requests + self.scorer_queue < self.max_posts_per_request:
            raise ValueError(f"max_ongoing_requests + max_queued_requests ({self.max_ongoing_requests} + "
                             f"{self.scorer_queue}) must be >= max_posts_per_request ({self.max_posts_per_request}): "
                             "each post of a request is one model call, so a full request could never be accepted")
        if self.run_dir and self.registry_dir:
            raise ValueError(f"give run_dir ({self.run_dir!r}) or registry_dir ({self.registry_dir!r}), not both")
        if self.log_content and not self.prediction_log:
            raise ValueError("log_content is on but prediction_log is off: content is only kept in the prediction "
                             "log, so turn prediction_log on or log_content off")
        if self.auth == "required" and not self.api_keys:
            raise PydanticCustomError(
                NO_API_KEYS, "auth is required but no api_keys are configured: set MODERATION_API_KEYS "
                             "(name:role+role:key,...) or api_keys in the settings file, or auth: disabled for local use")
        return self

    @property
    def ingress_admission_limit(self) -> int:
        """Scoring requests one ingress replica admits at once, and the work (in typical posts, `post_cost`) it
        has in flight: what the Scorers drain in max_queue_s at the measured capacity (at least max_batch_size,
        so a full batch can always form). Beyond the count: 503 + Retry-After before the body is read; beyond
        the work, once the body is parsed (a request is always admitted when nothing else is in flight)."""
        share = self.capacity_posts_per_s * self.max_queue_s * self.num_replicas / self.ingress_replicas
        return max(int(share), self.max_batch_size)

    def post_cost(self, text: str | None, has_image: bool) -> float:
        """A post's scoring cost in typical posts (see chars_per_extra_post).

        >>> s = ServeSettings(auth="disabled")
        >>> s.post_cost("hello", False), s.post_cost("x" * 20_000, False), s.post_cost(None, True)
        (1.00625, 26.0, 8.0)
        """
        return 1.0 + len(text or "") / self.chars_per_extra_post + (self.image_post_cost if has_image else 0.0)

    @property
    def max_request_cost(self) -> float:
        """The most work one request may ask for, in typical posts: what the Scorers finish within
        request_deadline_s at the measured capacity. A costlier request could never be answered in time: 413.
        Not divided among ingress replicas: a request's posts go to every Scorer replica whichever ingress took
        it (each ingress's share of the queue, `ingress_admission_limit`, is what bounds their sum)."""
        return self.capacity_posts_per_s * self.request_deadline_s * self.num_replicas

    @property
    def scorer_queue(self) -> int:
        """Posts one Scorer replica may queue: max_queued_requests, or max_queue_s seconds of measured capacity."""
        if self.max_queued_requests is not None:
            return self.max_queued_requests
        return max(1, round(self.capacity_posts_per_s * self.max_queue_s))

    @property
    def log_url(self) -> str:
        """The prediction log's database: its own URL if set, else the review queue's (one database for both)."""
        return self.prediction_log_url or self.queue_url

    @property
    def sampling(self) -> Sampling:
        """The review sampling rates in force (moderation.policy), stored with every review item."""
        return Sampling(random_review_rate=self.random_review_rate, block_review_rate=self.block_review_rate)


def default(field: str) -> Any:
    """A field's built-in default: the one place the Scorer's batch defaults come from."""
    return ServeSettings.model_fields[field].default


def parse_api_keys(value: str) -> list[dict]:
    """`name:role+role:key,name2:role:key2` -> [{"name", "roles", "key"}] (the MODERATION_API_KEYS form)."""
    keys = []
    for item in filter(None, (v.strip() for v in value.split(","))):
        parts = item.split(":", 2)
        if len(parts) != 3:
            raise ValueError(f"API key entry {parts[0]!r}: expected name:role+role:key")
        keys.append({"name": parts[0], "roles": parts[1].split("+"), "key": parts[2]})
    return keys


def load_settings(path: str | Path | None = None, **overrides: Any) -> ServeSettings:
    """Settings from overrides (None values ignored), `MODERATION_*` variables and the YAML file `path`.

    Raises ValueError naming every bad key (MissingApiKeys when the only problem is that auth is required
    and no key is configured).
    """
    if path is not None and not Path(path).is_file():
        raise ValueError(f"serve settings file {path} does not exist (see serve/serve_settings.example.yaml)")
    token = _YAML_FILE.set(Path(path) if path is not None else None)
    try:
        return ServeSettings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        errors = exc.errors()
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in errors)
        error = MissingApiKeys if [e["type"] for e in errors] == [NO_API_KEYS] else ValueError
        raise error(f"serve settings{f' ({path})' if path else ''}: {problems}") from None
    finally:
        _YAML_FILE.reset(token)
