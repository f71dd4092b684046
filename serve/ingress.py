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

import asyncio
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse
from ray import serve
from ray.serve.handle import DeploymentHandle

from . import auth
from .auth import Authenticator
from .review_api import ReviewContext, mount_review
from .schemas import ModelInfo, ModerateRequest, ModerateResponse
from .service import ModerationService
from .settings import ServeSettings

app = FastAPI(title="Moderation API", version="1",
              description="Scores posts per harm category and decides allow / review / block; human review queue.")


def this_replica() -> "ModerationIngress":
    return serve.get_replica_context().servable_object


def _review_context() -> ReviewContext:
    return this_replica().review


def _authenticator() -> Authenticator:
    return this_replica().auth


mount_review(app, _review_context, _authenticator)


@app.middleware("http")
async def announce_dev_mode(request: Request, call_next):
    response = await call_next(request)
    if this_replica().auth.disabled:
        response.headers["X-Auth-Disabled"] = "true"
    return response


@app.get("/healthz")
async def healthz():
    return {"status": "ok"}


@app.get("/", include_in_schema=False)
async def root():
    return RedirectResponse("/review")


def _moderate_openapi() -> dict:
    """`/v1/moderate` reads its body itself (size limit first, then JSON or multipart), so document both."""
    schema = ModerateRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    return {"requestBody": {"required": True, "content": {
        "application/json": {"schema": {k: v for k, v in schema.items() if k != "$defs"}},
        "multipart/form-data": {"schema": {"type": "object", "properties": {
            "id": {"type": "string"}, "text": {"type": "string"}, "image": {"type": "string", "format": "binary"}},
            "required": ["id"]}}}}}


@serve.deployment(name="ModerationAPI", ray_actor_options={"num_cpus": 0.1})
@serve.ingress(app)
class ModerationIngress:
    def __init__(self, scorer: DeploymentHandle, settings: ServeSettings, categories: list[str],
                 severities: dict[str, float]):
        self.auth = Authenticator(settings)
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
        try:
            info = await asyncio.wait_for(self.service.info(), timeout=5)
            await asyncio.to_thread(self.service.queue)
        except Exception as exc:
            return JSONResponse({"status": "not ready", "reason": str(exc)}, status_code=503)
        return {"status": "ready", "model_version": info["model_version"]}

    @app.get("/metrics", response_class=PlainTextResponse)
    async def metrics(self):
        return PlainTextResponse(self.service.metrics.render(), media_type="text/plain; version=0.0.4")
