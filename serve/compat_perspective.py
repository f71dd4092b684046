"""Perspective-compatible scoring: `POST /v1alpha1/comments:analyze`, for clients of Google's Perspective API.

    {"comment": {"text"}, "requestedAttributes": {ATTR: {}}, "languages"?, "doNotStore"?, ...}
    ->  ModerationService.moderate_posts (the path /v1/moderate takes)
    ->  {"attributeScores": {ATTR: {"summaryScore": {"value", "type": "PROBABILITY"}}}, "languages": [...]}

The key may come as `?key=` (how Perspective clients send it) as well as the usual headers. Attribute table
(Perspective's attribute -> our category); an attribute we cannot serve is a 400 naming it, never an
approximation:

| Perspective        | ours        | note |
|--------------------|-------------|------|
| TOXICITY           | toxicity    | |
| IDENTITY_ATTACK    | hate        | attacks on a protected attribute |
| INSULT             | harassment  | ours is insults *aimed at a person*; Perspective's INSULT is broader |
| THREAT             | violence    | ours also covers glorifying and graphic violence |
| SEXUALLY_EXPLICIT  | sexual      | |
| SEVERE_TOXICITY    | (none)      | 400: we score no severity grade of toxicity |
| PROFANITY          | (none)      | 400: we score no profanity-only class |

`summaryScore.value` is our fused probability for the category (calibrated on our validation data, not on
Perspective's raters). `languages`: the shipped model reads English (`SUPPORTED_LANGUAGES`); a request naming
only other languages is a 400, as Perspective answers an attribute that does not support a language. The
comment goes through our policy like any post: one in the review band is enqueued for human review unless
the request says `doNotStore: true` (then nothing is stored: no review item, no prediction-log entry).
`scoreThreshold` drops the attributes scored below it; `spanAnnotations: true` adds one span covering the
whole comment (we score comments, not spans); `clientToken` is echoed back; `context`, `sessionId` and
`communityId` are accepted and ignored.
"""

# No `from __future__ import annotations`: FastAPI must see real annotations on the routes.

import hashlib
import time
from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from . import auth
from .compat_openai import request_body_openapi
from .requests import ParsedPost, read_limited_body

# Perspective's attribute -> our category (the table in the module docstring and docs/migration.md).
PERSPECTIVE_ATTRIBUTES = {"TOXICITY": "toxicity", "IDENTITY_ATTACK": "hate", "INSULT": "harassment",
                          "THREAT": "violence", "SEXUALLY_EXPLICIT": "sexual"}
NOT_SERVED = {"SEVERE_TOXICITY": "we score no severity grade of toxicity",
              "PROFANITY": "we score no profanity-only class"}
SUPPORTED_LANGUAGES = ("en",)  # what the shipped model was trained and calibrated on


class Comment(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str
    type: Literal["PLAIN_TEXT"] = "PLAIN_TEXT"


class AttributeParameters(BaseModel):
    model_config = ConfigDict(extra="forbid")
    scoreType: Literal["PROBABILITY"] = "PROBABILITY"
    scoreThreshold: float | None = Field(None, ge=0, le=1, description="leave out the attribute when below this")


class AnalyzeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    comment: Comment
    requestedAttributes: dict[str, AttributeParameters] = Field(min_length=1)
    languages: list[str] | None = None
    doNotStore: bool = False
    spanAnnotations: bool = False
    clientToken: str | None = None
    context: dict[str, Any] | None = None
    sessionId: str | None = None
    communityId: str | None = None


class Score(BaseModel):
    value: float
    type: Literal["PROBABILITY"] = "PROBABILITY"


class SpanScore(BaseModel):
    begin: int
    end: int
    score: Score


class AttributeScore(BaseModel):
    summaryScore: Score
    spanScores: list[SpanScore] | None = None


class AnalyzeResponse(BaseModel):
    model_config = ConfigDict(json_schema_extra={"description": "Perspective's AnalyzeCommentResponse"})
    attributeScores: dict[str, AttributeScore]
    languages: list[str]
    clientToken: str | None = None


def moderation_service():
    """The replica's ModerationService; `mount_perspective` overrides this dependency."""
    raise RuntimeError("serve.compat_perspective is not wired: call mount_perspective(app, service_of)")


router = APIRouter(tags=["compatibility"])


@router.post("/v1alpha1/comments:analyze", response_model=AnalyzeResponse, response_model_exclude_none=True,
             openapi_extra=request_body_openapi(AnalyzeRequest),
             responses={400: {"description": "bad input, in Google's error shape: `error.message` names the field, "
                                             "the attribute or the language this model cannot serve"}},
             summary="Perspective-compatible comment analysis (see docs/migration.md)")
async def analyze(request: Request, caller: Annotated[str, Depends(auth.perspective_submitter)],
                  service=Depends(moderation_service)):
    started = time.perf_counter()
    try:
        body = await read_limited_body(request, service.settings.max_request_bytes)
        parsed = parse_analyze_request(body, service.settings)
        categories = (await service.info())["categories"]
        attributes = served_attributes(parsed.requestedAttributes, categories)
        languages = check_languages(parsed.languages)
        post = ParsedPost(id=f"perspective:{hashlib.sha256(parsed.comment.text.encode()).hexdigest()[:32]}",
                          text=parsed.comment.text, field="comment")
        answer = await service.moderate_posts([post], started, store=not parsed.doNotStore)
    except HTTPException as exc:
        return perspective_error(exc)
    scores = answer.results[0].categories
    out = {}
    for name, params in attributes.items():
        value = scores[PERSPECTIVE_ATTRIBUTES[name]].score
        if params.scoreThreshold is not None and value < params.scoreThreshold:
            continue
        spans = [SpanScore(begin=0, end=len(parsed.comment.text), score=Score(value=value))] \
            if parsed.spanAnnotations else None
        out[name] = AttributeScore(summaryScore=Score(value=value), spanScores=spans)
    return AnalyzeResponse(attributeScores=out, languages=languages, clientToken=parsed.clientToken)


def mount_perspective(app: FastAPI, service_of: Callable[[], object]) -> None:
    """Include `POST /v1alpha1/comments:analyze` in `app`; `service_of()` gives the replica's ModerationService."""
    app.include_router(router)
    app.dependency_overrides[moderation_service] = service_of


def parse_analyze_request(body: bytes, settings) -> AnalyzeRequest:
    try:
        parsed = AnalyzeRequest.model_validate_json(body or b"null")
    except ValidationError as exc:
        where = lambda loc: ".".join(str(p) for p in loc) or "body"  # noqa: E731
        raise HTTPException(400, "; ".join(f"{where(e['loc'])}: {e['msg']}" for e in exc.errors()[:5])) from None
    text = parsed.comment.text
    if not text.strip():
        raise HTTPException(400, "comment.text: empty comment")
    if len(text) > settings.max_text_chars:
        raise HTTPException(400, f"comment.text: {len(text)} characters, at most {settings.max_text_chars}")
    return parsed


def served_attributes(requested: dict[str, AttributeParameters], categories: list[str]) -> dict:
    """The requested attributes, or a 400 naming the first one this model cannot serve and why."""
    for name in requested:
        if name in NOT_SERVED:
            raise HTTPException(400, f"requestedAttributes.{name}: not served ({NOT_SERVED[name]}); served: "
                                     f"{sorted(a for a, c in PERSPECTIVE_ATTRIBUTES.items() if c in categories)}")
        if name not in PERSPECTIVE_ATTRIBUTES or PERSPECTIVE_ATTRIBUTES[name] not in categories:
            raise HTTPException(400, f"requestedAttributes.{name}: unknown or not scored by this model; served: "
                                     f"{sorted(a for a, c in PERSPECTIVE_ATTRIBUTES.items() if c in categories)}")
    return requested


def check_languages(languages: list[str] | None) -> list[str]:
    """The languages the answer reports; a 400 when none of the requested ones is supported."""
    if not languages:
        return list(SUPPORTED_LANGUAGES)
    supported = [lang for lang in languages if lang.lower().split("-")[0] in SUPPORTED_LANGUAGES]
    if not supported:
        raise HTTPException(400, f"languages: {languages} not supported (this model reads {list(SUPPORTED_LANGUAGES)})")
    return supported


def perspective_error(exc: HTTPException) -> JSONResponse:
    """An HTTPException in Google's API error shape (what Perspective clients read), status and headers kept."""
    status = {400: "INVALID_ARGUMENT", 413: "INVALID_ARGUMENT", 422: "INVALID_ARGUMENT", 503: "UNAVAILABLE"}
    return JSONResponse({"error": {"code": exc.status_code, "message": str(exc.detail),
                                   "status": status.get(exc.status_code, "INTERNAL")}},
                        status_code=exc.status_code, headers=exc.headers)
