"""The reviewer HTTP API and the reviewer page: the module-level `router`, mounted with `mount_review`.

Owns the mapping from HTTP to the review queue (who may call what, which queue error becomes which status)
and serving the static reviewer page. The queue itself (leases, decisions, audit, export) is `serve.db`; the
bodies' shapes are `serve.review_models`. The routes are declared once; what they work on (the queue, the
categories, the thresholds of each model version, the keys) is the app's `ReviewContext`, which the app
provides by overriding the `review_context` and `serve.auth.authenticator` dependencies (`mount_review`).

Endpoints (reviewer role unless noted; admin implies every role):
    GET  /v1/review/config                      the categories, default lease, who you are, auth mode
    GET  /v1/review/items?limit=&offset=        open items, in claim order
    POST /v1/review/claim                       claim the next n items for a lease
    GET  /v1/review/items/{id}                  one item (with its decision once decided)
    GET  /v1/review/items/{id}/image            the image bytes, with their MIME type
    POST /v1/review/items/{id}/decision         allow|block + per-category labels + note
    POST /v1/review/items/{id}/release          give a claim back
    POST /v1/review/items/{id}/extend           extend a live claim
    GET  /v1/review/stats                       queue counts
    GET  /v1/review/audit?item_id=&limit=       audit events (admin)
    POST /v1/review/export                      reviewed rows as a zip: reviewed.jsonl + images/ (admin)
    GET  /review                                the reviewer page (no auth: it asks for the key itself)

Export answers a zip because the generic JSONL refers to images by relative path (`images/<id>.<ext>`):
only the JSONL and its images together are a usable data set, so they travel as one file.
Errors: 401/403 from auth; 404 unknown item; 409 not your claim, lease expired or already decided;
422 bad input (unknown category, bad label value, naive `since`), each with a `detail` that names it.
"""

# No `from __future__ import annotations` here: FastAPI reads the route signatures at run time.

import html
import logging
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Body, Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.responses import FileResponse, HTMLResponse
from starlette.background import BackgroundTask

from moderation.policy import Thresholds

from . import auth
from .auth import Authenticator
from .db import ClaimError, Item, ItemNotFound, ReviewQueue
from .db.queries import ClaimFilter
from .db.records import check_labels
from .db.review_queue import MAX_INT64
from .review_models import (
    AuditEventOut, ClaimIn, ClaimOut, DecisionIn, DecisionOut, ErrorOut, ExportIn, ExtendIn, PendingOut,
    ReviewConfigOut, ReviewItemOut, SecondReviewIn, StatsOut,
)
from .settings import ServeSettings

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
STATIC_FILES = {"review.js": "text/javascript", "review.css": "text/css"}  # all the page loads; nothing else
# The page only talks to its own origin and never runs inline script: post text is hostile input.
PAGE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; "
            "connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'")
# Images are user uploads (an SVG can carry script): never let one run as a page on our origin.
IMAGE_HEADERS = {"Content-Security-Policy": "default-src 'none'; sandbox", "X-Content-Type-Options": "nosniff",
                 "Cache-Control": "no-store"}
ERRORS = {404: {"model": ErrorOut, "description": "no such item"},
          409: {"model": ErrorOut, "description": "not your claim, lease expired, or already decided"},
          422: {"description": "bad input; `detail` names the field or category and what is allowed"}}

UNDO_WINDOW_S = 120  # how long a reviewer may take back their own decision (a slip of the key)
ThresholdsLookup = Callable[[str], Thresholds | None]  # model version -> that version's thresholds, if known


@contextmanager
def queue_errors() -> Iterator[None]:
    """Turn the queue's errors into HTTP answers that keep its message (it names the item and the why)."""
    try:
        yield
    except ItemNotFound as exc:
        raise HTTPException(404, str(exc)) from None
    except ClaimError as exc:
        log.info("review claim refused: %s", exc)
        raise HTTPException(409, str(exc)) from None
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None


@dataclass(frozen=True)
class ReviewContext:
    """What the review routes work on. `queue` is called on every request (a Ray Serve replica opens its queue
    lazily, after fork); `categories` orders the label toggles and is what labels are checked against;
    `thresholds` maps a model version to its `Thresholds` (None when unknown): they pre-fill the page's
    labels and name the driving categories, and without them the suggestion falls back to fused >= 0.5."""

    queue: Callable[[], ReviewQueue]
    settings: ServeSettings
    categories: list[str]
    thresholds: ThresholdsLookup = lambda version: None

    def item_out(self, request: Request, item: Item, with_decision: bool = False) -> ReviewItemOut:
        url = None
        if item.image is not None:
            url = request.scope.get("root_path", "") + f"/v1/review/items/{item.id}/image"
        decision = self.queue().decision(item.id) if with_decision and item.status == "decided" else None
        return ReviewItemOut.of(item, url, self.thresholds(item.model_version), decision)


def review_context() -> ReviewContext:
    """The app's ReviewContext; the app that mounts `router` overrides this (see `mount_review`)."""
    raise RuntimeError("serve.review_api.review_context is not wired: mount the router with mount_review(app, ...)")


def mount_review(app: FastAPI, context: Callable[[], ReviewContext], authenticator: Callable[[], Authenticator]) -> None:
    """Include the reviewer API and page in `app`, with the dependencies that give them their context and keys."""
    app.include_router(router)
    app.dependency_overrides[review_context] = context
    app.dependency_overrides[auth.authenticator] = authenticator


Context = Annotated[ReviewContext, Depends(review_context)]
Reviewer = Annotated[str, Depends(auth.reviewer)]  # the caller's name, reviewer role checked
Admin = Annotated[str, Depends(auth.admin)]
router = APIRouter(tags=["review"])


# -- reading items: the open list, one item, its image --------------------------------------------------


@router.get("/v1/review/items", response_model=PendingOut, summary="Open items, in the order claims serve them")
def list_items(request: Request, who: Reviewer, ctx: Context, limit: Annotated[int, Query(ge=1, le=200)] = 50,
               offset: Annotated[int, Query(ge=0, le=MAX_INT64)] = 0) -> PendingOut:
    pending = ctx.queue().list_pending(limit=limit, offset=offset)
    return PendingOut(items=[ctx.item_out(request, item) for item in pending], limit=limit, offset=offset)


@router.get("/v1/review/items/{item_id}", response_model=ReviewItemOut, responses=ERRORS, summary="One item")
def get_item(request: Request, item_id: int, who: Reviewer, ctx: Context) -> ReviewItemOut:
    with queue_errors():
        return ctx.item_out(request, ctx.queue().get(item_id), with_decision=True)


@router.get("/v1/review/items/{item_id}/image", response_class=Response, responses=ERRORS,
            summary="The item's image bytes, served with their MIME type")
def get_image(item_id: int, who: Reviewer, ctx: Context) -> Response:
    with queue_errors():
        item = ctx.queue().get(item_id)
    if item.image is None:
        raise HTTPException(404, f"item {item_id} has no image (it is a text-only post)")
    return Response(item.image, media_type=item.image_mime, headers=IMAGE_HEADERS)


# -- working items: claim, decide, release, extend (each checked against the caller's own claim) ---------


@router.post("/v1/review/claim", response_model=ClaimOut, summary="Claim the next items for a lease")
def claim(request: Request, who: Reviewer, ctx: Context, body: Annotated[ClaimIn, Body()] = ClaimIn()) -> ClaimOut:
    lease_s = body.lease_s or ctx.settings.review_lease_s
    with queue_errors():
        claimed = ctx.queue().claim(who, lease_seconds=lease_s, n=body.n, only=claim_filter(body, ctx))
    return ClaimOut(items=[ctx.item_out(request, item) for item in claimed], lease_s=lease_s)


def claim_filter(body: ClaimIn, ctx: ReviewContext) -> ClaimFilter:
    """The queue filter of a claim. A category means items it sent (or could have sent) to review: its fused
    score at or above its review threshold in the item's model version (0.5 where the version's thresholds
    are unknown, the page's fallback for suggestions too)."""
    if body.category is not None and body.category not in ctx.categories:
        raise HTTPException(422, f"category: {body.category!r} is not one of {ctx.categories}")
    minimum = {}
    if body.category is not None:
        for version in ctx.queue().open_versions():
            thresholds = ctx.thresholds(version)
            if thresholds is not None and body.category in thresholds.categories:
                minimum[version] = thresholds[body.category].review
    return ClaimFilter(reason=body.reason, since=body.since, until=body.until, category=body.category,
                       category_min=minimum)


@router.post("/v1/review/items/{item_id}/decision", response_model=DecisionOut, responses=ERRORS,
             summary="Decide an item you hold a live claim on")
def decide(item_id: int, body: DecisionIn, who: Reviewer, ctx: Context) -> DecisionOut:
    with queue_errors():
        labels = check_labels(body.labels, ctx.categories)  # 422 naming an unknown category
        decision = ctx.queue().decide(item_id, who, body.action, labels, note=body.note)
    return DecisionOut.of(decision)


@router.post("/v1/review/items/{item_id}/release", response_model=ReviewItemOut, responses=ERRORS,
             summary="Give your claim back to the queue (skip)")
def release(request: Request, item_id: int, who: Reviewer, ctx: Context) -> ReviewItemOut:
    with queue_errors():
        return ctx.item_out(request, ctx.queue().release(item_id, who))


@router.post("/v1/review/items/{item_id}/undo", response_model=ReviewItemOut, responses=ERRORS,
             summary=f"Take back your own decision within {UNDO_WINDOW_S} s; the item is yours to decide again")
def undo(request: Request, item_id: int, who: Reviewer, ctx: Context) -> ReviewItemOut:
    with queue_errors():
        item = ctx.queue().undo_decision(item_id, who, UNDO_WINDOW_S, ctx.settings.review_lease_s)
    return ctx.item_out(request, item)


@router.post("/v1/review/items/{item_id}/second-review", response_model=ReviewItemOut, responses=ERRORS,
             summary="Re-open a decided item for a different reviewer's decision")
def second_review(request: Request, item_id: int, who: Reviewer, ctx: Context,
                  body: Annotated[SecondReviewIn, Body()] = SecondReviewIn()) -> ReviewItemOut:
    with queue_errors():
        return ctx.item_out(request, ctx.queue().request_second_review(item_id, who, note=body.note))


@router.post("/v1/review/items/{item_id}/extend", response_model=ReviewItemOut, responses=ERRORS,
             summary="Extend your live claim from now")
def extend(request: Request, item_id: int, who: Reviewer, ctx: Context,
           body: Annotated[ExtendIn, Body()] = ExtendIn()) -> ReviewItemOut:
    with queue_errors():
        item = ctx.queue().extend_lease(item_id, who, body.lease_s or ctx.settings.review_lease_s)
    return ctx.item_out(request, item)


# -- the queue as a whole: page set-up, counts, the audit log and the export (the last two admin-only) ---


@router.get("/v1/review/config", response_model=ReviewConfigOut, summary="Reviewer page set-up")
def review_config(who: Reviewer, ctx: Context) -> ReviewConfigOut:
    return ReviewConfigOut(reviewer=who, categories=ctx.categories, auth_disabled=ctx.settings.auth == "disabled",
                           lease_s=ctx.settings.review_lease_s, undo_window_s=UNDO_WINDOW_S)


@router.get("/v1/review/stats", response_model=StatsOut, summary="Queue counts")
def stats(who: Reviewer, ctx: Context) -> StatsOut:
    return StatsOut(**ctx.queue().stats())


@router.get("/v1/review/audit", response_model=list[AuditEventOut], summary="Audit events, oldest first (admin)")
def audit(who: Admin, ctx: Context, item_id: Annotated[int | None, Query(ge=0, le=MAX_INT64)] = None,
          limit: Annotated[int, Query(ge=1, le=10_000)] = 1000) -> list[AuditEventOut]:
    with queue_errors():
        return [AuditEventOut.of(event) for event in ctx.queue().audit(item_id=item_id, limit=limit)]


@router.post("/v1/review/export", response_class=FileResponse, summary="Reviewed rows as training data (admin)",
             description="A zip holding `reviewed.jsonl` (generic JSONL: id, text, image, labels) and the "
                         "`images/` its rows refer to. The row count is in the `X-Export-Rows` header.",
             responses={200: {"content": {"application/zip": {}}}, 422: ERRORS[422]})
def export(who: Admin, ctx: Context, body: Annotated[ExportIn, Body()] = ExportIn()) -> FileResponse:
    return _export_zip(ctx.queue(), who, body.since)


def _export_zip(queue: ReviewQueue, who: str, since: datetime | None) -> FileResponse:
    """The queue writes the JSONL and images into a folder; zip it, and delete both once sent."""
    workdir = Path(tempfile.mkdtemp(prefix="review-export-"))
    try:
        folder = workdir / "reviewed"
        rows = queue.export_decisions(folder / "reviewed.jsonl", since=since)
        archive = workdir / "reviewed.zip"
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
            for path in sorted(folder.rglob("*")):
                if path.is_file():
                    zf.write(path, path.relative_to(folder).as_posix())
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    log.info("%r exported %d reviewed rows (since %s)", who, rows, since)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return FileResponse(archive, media_type="application/zip", filename=f"reviewed-{stamp}.zip",
                        headers={"X-Export-Rows": str(rows)},
                        background=BackgroundTask(shutil.rmtree, workdir, ignore_errors=True))


# -- the page: `GET /review` and its two static files. Public: the API behind it checks the key. ----------

_TEMPLATE = (STATIC_DIR / "review.html").read_text(encoding="utf-8")


@router.get("/review", response_class=HTMLResponse, include_in_schema=False)
def review_page(request: Request, ctx: Context) -> HTMLResponse:
    # Filled in on the server so the auth-disabled banner shows even before (or without) the script.
    page = (_TEMPLATE.replace("__AUTH_MODE__", ctx.settings.auth)
            .replace("__ROOT__", html.escape(request.scope.get("root_path", ""), quote=True)))
    return HTMLResponse(page, headers={"Content-Security-Policy": PAGE_CSP, "Cache-Control": "no-store",
                                       "Referrer-Policy": "no-referrer", "X-Content-Type-Options": "nosniff"})


@router.get("/review/static/{name}", include_in_schema=False)
def review_static(name: str) -> FileResponse:
    if name not in STATIC_FILES:
        raise HTTPException(404, f"no static file {name!r} (have: {sorted(STATIC_FILES)})")
    return FileResponse(STATIC_DIR / name, media_type=STATIC_FILES[name], headers={"X-Content-Type-Options": "nosniff"})
