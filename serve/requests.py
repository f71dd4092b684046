"""Reading a moderation request: body size limits, JSON or multipart parsing, per-post checks, image checks.

Independent of Ray and of the model, so every 4xx can be tested with a plain Starlette request.

Bad input gets a 4xx that names the field: 413 for a body or image over its limit, 422 for a request that
does not match the schema (which posts[i].field, and why), 400 for bytes that are not a usable image.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass

from fastapi import HTTPException, Request
from pydantic import ValidationError

from .db.schema import POST_ID_MAX
from .schemas import ModerateRequest, PostIn
from .settings import ServeSettings

@dataclass
class ParsedPost:
    id: str
    text: str | None
    image_bytes: bytes | None = None
    image_mime: str | None = None
    field: str = "posts[0]"  # where it came from in the request, for error messages


async def read_limited_body(request: Request, limit: int) -> bytes:
    """The request body, or 413 as soon as it exceeds `limit` (a lying Content-Length does not help)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"request body of {declared} bytes exceeds the limit of {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def parse_moderate_request(request: Request, body: bytes, settings: ServeSettings) -> list[ParsedPost]:
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        posts = [await _parse_multipart(request, body)]
    elif content_type.startswith("application/json") or not content_type:
        posts = _parse_json(body)
    else:
        raise HTTPException(415, f"content type {content_type!r}: send application/json or multipart/form-data")
    if len(posts) > settings.max_posts_per_request:
        raise HTTPException(422, f"posts: {len(posts)} posts, at most {settings.max_posts_per_request} per request")
    seen = set()
    for post in posts:
        _check_post(post, settings)
        if post.id in seen:
            raise HTTPException(422, f"{post.field}.id: duplicate id {post.id!r} in one request")
        seen.add(post.id)
    return posts


def _parse_json(body: bytes) -> list[ParsedPost]:
    try:
        payload = json.loads(body or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise HTTPException(400, f"body is not valid JSON: {exc}") from None
    except RecursionError:  # e.g. 100,000 nested arrays: valid JSON, but no post is shaped like that
        raise HTTPException(422, "body: JSON nested too deeply (a post is an object of strings)") from None
    try:
        if isinstance(payload, dict) and "posts" in payload:
            items = ModerateRequest.model_validate(payload).posts
        else:
            items = [PostIn.model_validate(payload)]  # a single post is accepted as the whole body
    except ValidationError as exc:
        raise HTTPException(422, _validation_message(exc)) from None
    posts = []
    for i, item in enumerate(items):
        image = None
        if item.image_base64 is not None:
            try:
                image = base64.b64decode(item.image_base64, validate=True)
            except (binascii.Error, ValueError):
                raise HTTPException(400, f"posts[{i}].image_base64: not valid base64") from None
            if not image:
                raise HTTPException(422, f"posts[{i}].image_base64: empty image (leave the field out for none)")
        posts.append(ParsedPost(id=item.id, text=item.text, image_bytes=image, field=f"posts[{i}]"))
    return posts


def _validation_message(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"]).lstrip(".")
        parts.append(f"{loc or 'body'}: {err['msg']}")
    return "; ".join(parts)


async def _parse_multipart(request: Request, body: bytes) -> ParsedPost:
    # The stream was consumed by read_limited_body; a new Request over the same scope replays the bytes read.
    form = await Request(request.scope, receive=_replay(body)).form()
    unknown = set(form) - {"id", "text", "image"}
    if unknown:
        raise HTTPException(422, f"form fields {sorted(unknown)} not allowed (id, text, image)")
    post_id = form.get("id")
    if not post_id or not isinstance(post_id, str):
        raise HTTPException(422, "id: required form field")
    image = form.get("image")
    if image is not None and not hasattr(image, "read"):
        raise HTTPException(422, "image: must be a file part (multipart filename), not a plain field")
    data = await image.read() if image is not None else None
    if image is not None and not data:
        raise HTTPException(422, "image: empty file (leave the part out for none)")
    text = form.get("text")
    return ParsedPost(id=post_id, text=text if isinstance(text, str) else None, image_bytes=data, field="form")


def _replay(body: bytes):
    """An ASGI `receive` that hands over `body` once, as a single message."""
    sent = False

    async def receive() -> dict:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


def _check_post(post: ParsedPost, settings: ServeSettings) -> None:
    # The stores cannot hold these (PostgreSQL text rejects NUL; post_id is a POST_ID_MAX-character column):
    # refused here, naming the field, rather than failing with a 500 after scoring.
    if len(post.id) > POST_ID_MAX:
        raise HTTPException(422, f"{post.field}.id: {len(post.id)} characters, at most {POST_ID_MAX}")
    for name, value in (("id", post.id), ("text", post.text)):
        if value is not None and "\x00" in value:
            raise HTTPException(422, f"{post.field}.{name}: contains a NUL character (U+0000), which is not allowed")
    if post.text is not None and len(post.text) > settings.max_text_chars:
        raise HTTPException(422, f"{post.field}.text: {len(post.text)} characters, at most {settings.max_text_chars}")
    if not (post.text and post.text.strip()) and not post.image_bytes:
        raise HTTPException(422, f"{post.field}: empty post (give text, an image, or both)")
    if post.image_bytes and len(post.image_bytes) > settings.max_image_bytes:
        raise HTTPException(413, f"{post.field}.image: {len(post.image_bytes)} bytes, at most {settings.max_image_bytes}")


def decode_image(post: ParsedPost, settings: ServeSettings) -> bytes:
    """Check the upload really is a decodable image within the pixel limit; 400 naming the field if not."""
    from moderation.encoders.images import ImageError, load_image

    try:
        load_image(post.image_bytes, max_pixels=settings.max_image_pixels)
    except ImageError as exc:
        raise HTTPException(400, f"{post.field}.image: {exc}") from None
    post.image_mime = image_mime(post.image_bytes)
    return post.image_bytes


def image_mime(data: bytes) -> str:
    """The media type of image bytes Pillow decodes, from Pillow's own table (`Image.MIME`: TIFF, PPM, ICO and
    every other format it reads), so the queue always stores an `image/*` type for them."""
    from io import BytesIO

    from PIL import Image

    with Image.open(BytesIO(data)) as img:
        fmt = img.format
        mime = img.get_format_mimetype() or Image.MIME.get(fmt or "")
    return mime if mime and mime.startswith("image/") else f"image/x-{(fmt or 'unknown').lower()}"
