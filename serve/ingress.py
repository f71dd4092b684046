"""The HTTP ingress deployment (`ModerationIngress`) and its FastAPI app, declared at module level.

    HTTP -> ModerationIngress (auth, validation, policy, review queue and page, prediction log, metrics)
              -> Scorer (serve.scorer; @serve.batch: posts from concurrent requests are scored together)

Ray Serve's class-based FastAPI ingress: the routes that need the replica's state are methods (`self`);
the reviewer API and page (`serve.review_api`) are module-level routes whose context and key check are the
replica's, given through the `review_context` / `authenticator` dependency overrides, which find the replica
the way Ray's class-based views find `self` (`serve.get_replica_context().servable_object`).
`serve.app.build_app` composes the deployments with `.bind()`.
"""

# No `from __future__ import annotations` here: Ray's class-based FastAPI views need real annotations.

from typing import Annotated

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse
from ray import serve
from ray.serve.handle import DeploymentHandle

from . import auth
from .admission import AdmissionMiddleware, Gate
from .auth import Authenticator
from .db import QueueUnavailable
from .docs import complete_openapi, mount_docs
from .compat_openai import mount_openai
from .compat_perspective import mount_perspective
from .metrics import instrument
from .review_api import ReviewContext, mount_review
from .schemas import ModelInfo, ModerateRequest, ModerateResponse
from .service import RETRY_AFTER_S, ModerationService
from .settings import ServeSettings

app = FastAPI(title="Moderation API", version="1", docs_url=None, redoc_url=None,
              description="Scores posts per harm category and decides allow / review / block; human review queue.")
mount_docs(app)  # Swagger UI from the installed assets, not a CDN


def this_replica() -> "ModerationIngress":
    return serve.get_replica_context().servable_object


def _review_context() -> ReviewContext:
    return this_replica().review


def _authenticator() -> Authenticator:
    return this_replica().auth


mount_review(app, _review_context, _authenticator)
# The OpenAI- and Perspective-compatible routes (serve.compat_*) take the same service path as /v1/moderate.
mount_openai(app, lambda: this_replica().service)
mount_perspective(app, lambda: this_replica().service)


@app.middleware("http")
async def announce_dev_mode(request: Request, call_next):
    response = await call_next(request)
    if this_replica().auth.disabled:
        response.headers["X-Auth-Disabled"] = "true"
    return response


# Outermost: liveness, the key check before any body is read, the body deadline and draining (serve.admission).
app.add_middleware(AdmissionMiddleware, gate=lambda: this_replica().gate)
# Added last, so outermost: every answer is counted by route and status, the admission's 401/408/503 included.
instrument(app, lambda: this_replica().service.metrics)


@app.exception_handler(QueueUnavailable)
async def queue_unavailable(request: Request, exc: QueueUnavailable):
    """The review queue cannot be used (e.g. its file disappeared): 503, never a 2xx for an item that is lost."""
    return JSONResponse({"detail": str(exc)}, status_code=503, headers={"Retry-After": str(RETRY_AFTER_S)})


@app.get("/healthz")
async def healthz():
    """Liveness; answered by serve.admission before routing (documented here)."""
    return {"status": "ok"}


@app.get("/", include_in_schema=False)
async def root():
    return RedirectResponse("/review")


_MODERATE_SCHEMA = ModerateRequest.model_json_schema(ref_template="#/components/schemas/{model}")


def _moderate_openapi() -> dict:
    """`/v1/moderate` reads its body itself (size limit first, then JSON or multipart), so document both: a
    `{"posts": [...]}` body or one post alone; the posts' schema goes to the components (complete_openapi)."""
    request = {k: v for k, v in _MODERATE_SCHEMA.items() if k != "$defs"}
    return {"requestBody": {"required": True, "content": {
        "application/json": {"schema": {"anyOf": [request, {"$ref": "#/components/schemas/PostIn"}]}},
        "multipart/form-data": {"schema": {"type": "object", "properties": {
            "id": {"type": "string", "minLength": 1, "maxLength": 255}, "text": {"type": "string"},
            "image": {"type": "string", "format": "binary"}}, "required": ["id"]}}}},
        "responses": {"400": {"description": "not valid JSON, or image bytes that are not a usable image"},
                      "415": {"description": "a content type other than JSON or multipart"}}}


complete_openapi(app, _MODERATE_SCHEMA.get("$defs", {}))


@serve.deployment(name="ModerationAPI", ray_actor_options={"num_cpus": 0.1})
@serve.ingress(app)
class ModerationIngress:
    def __init__(self, scorer: DeploymentHandle, settings: ServeSettings, categories: list[str],
                 severities: dict[str, float]):
        self.auth = Authenticator(settings)
        self.gate = Gate(self.auth, settings.body_timeout_s, RETRY_AFTER_S, settings.ingress_admission_limit)
        self.service = ModerationService(scorer, settings, severities)
        self.review = ReviewContext(self.service.queue, settings, list(categories), self.service.thresholds)

    @app.post("/v1/moderate", response_model=ModerateResponse, openapi_extra=_moderate_openapi())
    async def moderate(self, request: Request, caller: Annotated[str, Depends(auth.submitter)]) -> ModerateResponse:
        # The key is checked before the body is read (the body is read here, not by FastAPI).
        return await self.service.moderate(request)

    @app.get("/v1/model", response_model=ModelInfo)
    async def model_info(self) -> ModelInfo:
        return await self.service.model_info()

    @app.get("/readyz")
    async def readyz(self):
        ready = await self.readiness()
        return JSONResponse(ready, status_code=200 if ready["status"] == "ready" else 503)

    async def readiness(self) -> dict:
        """{"status": "ready", "model_version"} or {"status": "not ready", "reason"} (also called by handle)."""
        if self.gate.draining:
            return {"status": "not ready", "reason": "shutting down"}
        return await self.service.readiness()

    async def drain(self, grace_s: float) -> int:
        """Shutdown, step one (serve.local): refuse new requests, let those in flight finish within `grace_s`;
        returns how many were still running."""
        return await self.gate.drain(grace_s)

    @app.get("/metrics", response_class=PlainTextResponse)
    async def metrics(self):
        return PlainTextResponse(self.service.metrics.render(), media_type="text/plain; version=0.0.4")
