"""OpenAI-compatible moderation: `POST /v1/moderations`, so clients of OpenAI's endpoint switch by base URL.

    {"input": str | [str] | [content part], "model"?}  ->  ModerationService.moderate_posts (the path
    /v1/moderate takes: Scorer, moderation.policy.decide, review queue, prediction log, metrics)
    ->  {"id": "modr-...", "model", "results": [{flagged, categories, category_scores,
                                                 category_applied_input_types}]}

Inputs, as OpenAI reads them: a string is one post; a list of strings is one post per string (one result
each); a list of content parts (`{"type": "text", "text"}`, `{"type": "image_url", "image_url": {"url"}}`) is
ONE post: its text parts joined by newlines, and at most one image. Images come inline as `data:image/...;
base64,...` URLs only: this service never fetches a remote URL (no outbound requests from the moderation
path), so an http(s) URL is a 400 naming the field. `model` is accepted and ignored: the answer's `model` is
the version that really scored the post.

Category table (our category -> OpenAI's name). Categories we do not score (`harassment/threatening`,
`hate/threatening`, `illicit`, `illicit/violent`, `self-harm/intent`, `self-harm/instructions`,
`sexual/minors`, `violence/graphic`) are omitted, never invented: OpenAI's Python client reads an omitted
category as None. Our categories without an OpenAI name (`toxicity`) are reported under their own name,
an extra key the official clients keep (`result.categories.model_extra`), because they drive `flagged` too.

| ours        | OpenAI       |
|-------------|--------------|
| harassment  | harassment   |
| hate        | hate         |
| sexual      | sexual       |
| violence    | violence     |
| self_harm   | self-harm    |
| toxicity    | (toxicity: ours, no OpenAI counterpart) |

`flagged` is our policy's action != allow, exactly what /v1/moderate answers for the same post (a post in
the review band, or sampled for review, is flagged); `categories[c]` is that category's own action != allow;
`category_scores[c]` is our fused probability (calibrated on our validation data, not OpenAI's scale).
A flagged post is enqueued for human review as /v1/moderate enqueues it: the platform's post is real, and
the review is where live quality is measured. Its review-queue post id is `openai:<sha256 of its content>`,
so a retried call finds the same item instead of adding a second one.
"""

# No `from __future__ import annotations`: FastAPI must see real annotations on the routes.

import base64
import binascii
import hashlib
import logging
import re
import time
import uuid
from collections.abc import Callable
from typing import Annotated, Literal, Union

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from . import auth
from .requests import ParsedPost, read_limited_body
from moderation.policy import Action

from .schemas import PostResult

log = logging.getLogger(__name__)

# Our category -> OpenAI's category name (the table in the module docstring and docs/migration.md).
OPENAI_CATEGORIES = {"harassment": "harassment", "hate": "hate", "sexual": "sexual", "violence": "violence",
                     "self_harm": "self-harm"}
DATA_URL = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(;[^;,]*)*),(?P<data>.*)$", re.DOTALL)


class TextPart(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["text"]
    text: str


class ImageURL(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = Field(description="a data: URL (`data:image/png;base64,...`); remote URLs are not fetched")


class ImagePart(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["image_url"]
    image_url: ImageURL


ContentPart = Annotated[Union[TextPart, ImagePart], Field(discriminator="type")]


class ModerationsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    input: Union[str, list[str], list[ContentPart]] = Field(
        description="a string, a list of strings (one result each), or a list of content parts (one post)")
    model: str | None = Field(None, description="accepted for compatibility and ignored: the served model answers")


class ModerationResult(BaseModel):
    flagged: bool = Field(description="our policy's action != allow (what /v1/moderate answers)")
    categories: dict[str, bool] = Field(description="per category: its own action != allow")
    category_scores: dict[str, float] = Field(description="per category: our fused probability")
    category_applied_input_types: dict[str, list[Literal["text", "image"]]] = Field(
        description="per category: the inputs its score was computed from")


class ModerationsResponse(BaseModel):
    id: str = Field(description="modr-<random hex>")
    model: str = Field(description="the model version that scored the inputs")
    results: list[ModerationResult]


def moderation_service():
    """The replica's ModerationService; `mount_openai` overrides this dependency."""
    raise RuntimeError("serve.compat_openai is not wired: call mount_openai(app, service_of)")


router = APIRouter(tags=["compatibility"])


def request_body_openapi(model: type[BaseModel]) -> dict:
    """`model` as an OpenAPI request body, its `$defs` inlined. The compatible routes read their bodies
    themselves (the key is checked first, the size limit applies while reading), so they document them here."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def inline(node):
        if isinstance(node, dict):
            if "$ref" in node:
                return inline(defs[node["$ref"].rsplit("/", 1)[-1]])
            return {k: inline(v) for k, v in node.items()}
        return [inline(v) for v in node] if isinstance(node, list) else node

    return {"requestBody": {"required": True, "content": {"application/json": {"schema": inline(schema)}}}}


@router.post("/v1/moderations", response_model=ModerationsResponse, openapi_extra=request_body_openapi(ModerationsRequest),
             responses={400: {"description": "bad input, in OpenAI's error shape: `error.message` names the field "
                                             "(a remote image URL, which the service does not fetch, included)"}},
             summary="OpenAI-compatible moderation (see docs/migration.md)")
async def moderations(request: Request, caller: Annotated[str, Depends(auth.submitter)],
                      service=Depends(moderation_service)):
    started = time.perf_counter()
    try:
        body = await read_limited_body(request, service.settings.max_request_bytes)
        posts = parse_moderations_request(body, service.settings)
        answer = await service.moderate_posts(posts, started)
    except HTTPException as exc:
        return openai_error(exc)
    return ModerationsResponse(id=f"modr-{uuid.uuid4().hex}", model=answer.model_version,
                               results=[openai_result(r) for r in answer.results])


def mount_openai(app: FastAPI, service_of: Callable[[], object]) -> None:
    """Include `POST /v1/moderations` in `app`; `service_of()` gives the replica's ModerationService."""
    app.include_router(router)
    app.dependency_overrides[moderation_service] = service_of


# -- request -> posts -------------------------------------------------------------------------------------------


def parse_moderations_request(body: bytes, settings) -> list[ParsedPost]:
    """The request's posts (one per string, or one for a list of content parts); a 4xx naming the field."""
    try:
        request = ModerationsRequest.model_validate_json(body or b"null")
    except ValidationError as exc:
        raise HTTPException(400, "; ".join(_where(e["loc"]) + f": {e['msg']}" for e in exc.errors()[:5])) from None
    items = request.input
    if isinstance(items, str):
        posts = [_post("input", items, None)]
    elif not items:
        raise HTTPException(400, "input: empty list")
    elif all(isinstance(i, str) for i in items):
        posts = [_post(f"input[{i}]", text, None) for i, text in enumerate(items)]
    else:
        posts = [_parts_post(items)]
    if len(posts) > settings.max_posts_per_request:
        raise HTTPException(400, f"input: {len(posts)} inputs, at most {settings.max_posts_per_request} per request")
    for post in posts:
        _check_limits(post, settings)
    return posts


def _parts_post(parts: list) -> ParsedPost:
    texts, image, image_field, mime = [], None, None, None
    for i, part in enumerate(parts):
        if isinstance(part, TextPart):
            texts.append(part.text)
        elif image is not None:
            raise HTTPException(400, f"input[{i}]: a second image; a post holds one image (send another request)")
        else:
            image_field = f"input[{i}].image_url"
            image, mime = decode_data_url(part.image_url.url, f"{image_field}.url")
    post = _post(image_field or "input", "\n".join(texts) or None, image)
    post.image_mime = mime
    return post


def _post(field: str, text: str | None, image: bytes | None) -> ParsedPost:
    digest = hashlib.sha256()
    digest.update((text or "").encode())
    digest.update(b"\0" + (image or b""))
    return ParsedPost(id=f"openai:{digest.hexdigest()[:32]}", text=text, image_bytes=image, field=field)


def decode_data_url(url: str, field: str) -> tuple[bytes, str]:
    """(image bytes, MIME type) of a `data:image/...;base64,...` URL; 400 naming `field` for anything else."""
    if re.match(r"^[a-zA-Z][\w+.-]*://", url):
        raise HTTPException(400, f"{field}: remote URL {url[:80]!r} refused: this service does not fetch images; "
                                 "send the image inline as a data: URL (data:image/png;base64,...)")
    match = DATA_URL.match(url)
    if match is None:
        raise HTTPException(400, f"{field}: expected a data: URL (data:image/png;base64,...), got {url[:40]!r}")
    mime = match["mime"] or ""
    if not mime.startswith("image/") or ";base64" not in match["params"]:
        raise HTTPException(400, f"{field}: expected a base64 image data: URL (data:image/...;base64,...), "
                                 f"got media type {mime or 'none'!r}" + ("" if ";base64" in match["params"]
                                                                         else " without ;base64"))
    try:
        return base64.b64decode(match["data"], validate=True), mime
    except (binascii.Error, ValueError):
        raise HTTPException(400, f"{field}: the data: URL's payload is not valid base64") from None


def _check_limits(post: ParsedPost, settings) -> None:
    if post.text is not None and len(post.text) > settings.max_text_chars:
        raise HTTPException(400, f"{post.field}: {len(post.text)} characters, at most {settings.max_text_chars}")
    if not (post.text and post.text.strip()) and not post.image_bytes:
        raise HTTPException(400, f"{post.field}: empty input (give text, an image, or both)")
    if post.image_bytes and len(post.image_bytes) > settings.max_image_bytes:
        raise HTTPException(413, f"{post.field}: image of {len(post.image_bytes)} bytes, "
                                 f"at most {settings.max_image_bytes}")


def _where(loc) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".") or "body"


# -- our result -> OpenAI's -------------------------------------------------------------------------------------


def openai_name(category: str) -> str:
    """OpenAI's name for our category; ours when it has none (see the table in the module docstring)."""
    return OPENAI_CATEGORIES.get(category, category)


def openai_result(result: PostResult) -> ModerationResult:
    categories, scores, applied = {}, {}, {}
    for category, c in result.categories.items():
        name = openai_name(category)
        categories[name] = c.action != Action.ALLOW
        scores[name] = c.score
        applied[name] = [kind for kind, s in (("text", c.text_score), ("image", c.image_score)) if s is not None]
    return ModerationResult(flagged=result.action != Action.ALLOW, categories=categories, category_scores=scores,
                            category_applied_input_types=applied)


def openai_error(exc: HTTPException) -> JSONResponse:
    """An HTTPException in OpenAI's error shape (what its clients read), keeping the status and headers."""
    kind = "invalid_request_error" if exc.status_code < 500 else "server_error"
    return JSONResponse({"error": {"message": str(exc.detail), "type": kind, "param": None, "code": None}},
                        status_code=exc.status_code, headers=exc.headers)
