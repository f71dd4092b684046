"""The Ray Serve application: a batched model deployment behind a FastAPI ingress.

    HTTP -> ModerationAPI (FastAPI ingress: auth, validation, policy, review queue, prediction log, metrics)
              -> Scorer (@serve.batch: posts from concurrent requests are scored together, GPU if present)

The ingress fans a request's posts out to the Scorer one post per call, so posts from many requests share a
batch. Images are decoded and checked in the ingress, so a bad upload is a 400 for its own request and can
never fail a batch other requests are in. `build_app(args)` is the import path `serve deploy` uses.
"""

# No `from __future__ import annotations` here: Ray's class-based FastAPI views need real annotations.

import asyncio
import logging
import random
import time

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse
from ray import serve
from ray.serve.config import BackpressureConfig
from ray.serve.exceptions import BackPressureError

from .auth import Authenticator
from .ingress import ServiceMetrics, decode_image, parse_moderate_request, read_limited_body, shared_queue
from .policy import Action, decide
from .prediction_log import LoggedPrediction, shared_prediction_log
from .schemas import CategoryResult, ModelInfo, ModerateResponse, PostResult
from .settings import ServeSettings

log = logging.getLogger(__name__)

# Bounded queues shed load with 503 + Retry-After (seconds) rather than growing without limit.
RETRY_AFTER_S = 1
BACKPRESSURE = BackpressureConfig(status_code=503, retry_after_s=RETRY_AFTER_S)


@serve.deployment(name="Scorer")
class Scorer:
    """Holds the model; scores batches of posts. Settings arrive through `reconfigure` (live-changeable)."""

    def __init__(self, run_dir: str | None, device: str = "cpu", registry_dir: str | None = None,
                 reload_check_s: float = 5.0):
        from moderation.predict import Moderator
        from moderation.registry import Registry

        self.registry = Registry(registry_dir) if registry_dir else None
        self.device, self.reload_check_s, self.last_check = device, reload_check_s, time.monotonic()
        if self.registry is not None:
            run_dir = self.registry.current_dir()
            if run_dir is None:
                raise ValueError(f"registry {registry_dir} has no current model: promote one first")
        self.moderator = Moderator(run_dir, device=device)

    async def _maybe_reload(self) -> None:
        """Take up a newly promoted model without a restart (the registry pointer is swapped atomically)."""
        if self.registry is None or time.monotonic() - self.last_check < self.reload_check_s:
            return
        self.last_check = time.monotonic()
        current = self.registry.current_dir()
        if current is not None and current != self.moderator.run_dir:
            from moderation.predict import Moderator

            log.info("loading newly promoted model %s", current.name)
            self.moderator = await asyncio.to_thread(Moderator, current, self.device)

    def reconfigure(self, user_config: dict) -> None:
        self.score.set_max_batch_size(int(user_config.get("max_batch_size", 32)))
        self.score.set_batch_wait_timeout_s(float(user_config.get("batch_wait_timeout_s", 0.01)))

    def info(self) -> dict:
        m = self.moderator
        return {"model_version": m.version, "categories": m.categories, "modalities": m.modalities,
                "thresholds": m.thresholds}

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.01)
    async def score(self, posts: list[dict]) -> list[dict]:
        await self._maybe_reload()
        try:
            results = self.moderator.score(posts)
        except Exception:  # one bad post must not fail the other requests in its batch
            log.exception("batch of %d failed; scoring its posts one by one", len(posts))
            results = [self._score_one(p) for p in posts]
        for r in results:
            r["model_version"], r["batch_size"] = self.moderator.version, len(posts)
        return results

    def _score_one(self, post: dict) -> dict:
        try:
            return self.moderator.score([post])[0]
        except Exception as exc:
            return {"id": post.get("id"), "error": str(exc)}


class ModerationService:
    """What the ingress does per request, independent of HTTP routing (one instance per ingress replica)."""

    def __init__(self, scorer, settings: ServeSettings, severities: dict[str, float] | None = None):
        self.scorer = scorer
        self.settings, self.severities = settings, severities
        self.metrics = ServiceMetrics()
        self.rng = random.Random()
        self._info: dict | None = None

    async def info(self, version: str | None = None) -> dict:
        """Model version, categories and thresholds; refetched when a response names another version."""
        if self._info is None or (version is not None and version != self._info["model_version"]):
            self._info = await self.scorer.info.remote()
        return self._info

    def queue(self):
        return shared_queue(self.settings.queue_url, self.severities)

    async def moderate(self, request: Request) -> ModerateResponse:
        started = time.perf_counter()
        body = await read_limited_body(request, self.settings.max_request_bytes)
        posts = await parse_moderate_request(request, body, self.settings)
        scoring = [{"id": p.id, "text": p.text, "image": decode_image(p, self.settings) if p.image_bytes else None}
                   for p in posts]
        try:
            scored = await asyncio.gather(*[self.scorer.score.remote(p) for p in scoring])
        except BackPressureError as exc:
            raise HTTPException(503, f"the model is at capacity ({exc.message}); retry shortly",
                                headers={"Retry-After": str(RETRY_AFTER_S)}) from None
        failed = [r for r in scored if "error" in r]
        if failed:
            raise HTTPException(422, f"post {failed[0]['id']!r}: {failed[0]['error']}")
        info = await self.info(scored[0]["model_version"])
        results = [await self._decide_and_queue(post, r, info) for post, r in zip(posts, scored)]
        if self.settings.prediction_log:
            await self._log_predictions(posts, scored, results)
        elapsed = (time.perf_counter() - started) * 1000
        self.metrics.observe_request(elapsed, [r["batch_size"] for r in scored], results)
        return ModerateResponse(model_version=scored[0]["model_version"], elapsed_ms=round(elapsed, 2), results=results)

    async def _decide_and_queue(self, post, scored: dict, info: dict) -> PostResult:
        decision = decide(scored["scores"], info["thresholds"], self.settings.random_review_rate, self.rng)
        categories = {
            c: CategoryResult(score=s, text_score=(scored["text_scores"] or {}).get(c),
                              image_score=(scored["image_scores"] or {}).get(c), action=decision.categories[c].value)
            for c, s in scored["scores"].items()}
        item_id, reason = None, None
        if decision.review_requested:
            reason = "random_sample" if decision.reason == "random_sample" else "review_band"
        elif decision.action == Action.BLOCK and self.rng.random() < self.settings.block_review_rate:
            reason = "block_sample"  # the post stays blocked; reviewers measure block precision on the sample
        if reason is not None:
            # Answer only after the queue has committed the item: an accepted post is never lost.
            item_id = await asyncio.to_thread(self._enqueue, post, scored, decision, info, reason)
        return PostResult(id=post.id, action=decision.action.value, reason=decision.reason, drivers=decision.drivers,
                          categories=categories, review_item_id=item_id)

    def prediction_log(self):
        s = self.settings
        return shared_prediction_log(s.log_url, log_content=s.log_content, retention_days=s.retention_days)

    async def _log_predictions(self, posts, scored: list[dict], results: list[PostResult]) -> None:
        """Record the request's decisions (one transaction, off the event loop). A failure is logged, never
        raised: the decisions are already made and queued, and monitoring must not take moderation down."""
        entries = [LoggedPrediction(post_id=p.id, model_version=r["model_version"], scores=r["scores"],
                                    action=res.action, drivers=res.drivers, reason=res.reason,
                                    review_item_id=res.review_item_id, text=p.text, image=p.image_bytes,
                                    image_mime=p.image_mime)
                   for p, r, res in zip(posts, scored, results)]
        try:
            await asyncio.to_thread(lambda: self.prediction_log().record(entries))
        except Exception:
            log.exception("could not write %d decisions to the prediction log", len(entries))

    def _enqueue(self, post, scored: dict, decision, info: dict, reason: str) -> int:
        from .review_queue import NewItem

        scores = {c: {"fused": s, "text": (scored["text_scores"] or {}).get(c),
                      "image": (scored["image_scores"] or {}).get(c)} for c, s in scored["scores"].items()}
        item = NewItem(post_id=post.id, scores=scores, action=decision.action.value,
                       model_version=scored["model_version"],
                       reason=reason,
                       text=post.text, image=post.image_bytes, image_mime=post.image_mime)
        item_id, _ = self.queue().enqueue(item, info["thresholds"])
        return item_id


def build_fastapi(settings: ServeSettings, categories: list[str], severities: dict[str, float] | None = None) -> FastAPI:
    """The HTTP app with the routes that need no per-replica state: health, dev-mode banner, review router."""
    from .review_api import build_review_router

    app = FastAPI(title="Moderation API", version="1",
                  description="Scores posts per harm category and decides allow / review / block; human review queue.")
    auth = Authenticator(settings)

    @app.middleware("http")
    async def announce_dev_mode(request: Request, call_next):
        response = await call_next(request)
        if settings.auth == "disabled":
            response.headers["X-Auth-Disabled"] = "true"
        return response

    @app.get("/healthz")
    async def healthz():
        return {"status": "ok"}

    @app.get("/", include_in_schema=False)
    async def root():
        return RedirectResponse("/review")

    app.include_router(build_review_router(lambda: shared_queue(settings.queue_url, severities), auth, settings,
                                           categories))
    return app


def _moderate_openapi() -> dict:
    from .schemas import ModerateRequest

    schema = ModerateRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    return {"requestBody": {"required": True, "content": {
        "application/json": {"schema": {k: v for k, v in schema.items() if k != "$defs"}},
        "multipart/form-data": {"schema": {"type": "object", "properties": {
            "id": {"type": "string"}, "text": {"type": "string"}, "image": {"type": "string", "format": "binary"}},
            "required": ["id"]}}}}}


def build_app(args: dict | None = None):
    """`serve deploy` / `moderation serve` entry point: settings (a dict, YAML path or env) -> Application."""
    import torch

    from moderation.predict import load_run_config
    from moderation.runfiles import resolve_run_dir

    from .settings import load_settings

    args = dict(args or {})
    settings = load_settings(args.pop("settings_path", None), **args)
    if settings.registry_dir:
        from moderation.registry import Registry

        current = Registry(settings.registry_dir).current_dir()
        if current is None:
            raise ValueError(f"registry_dir {settings.registry_dir}: no current model; promote one first")
        run_config = load_run_config(resolve_run_dir(current))
    else:
        run_config = load_run_config(resolve_run_dir(settings.run_dir))
    categories = run_config.category_names
    severities = {c.name: c.severity for c in run_config.categories}
    gpu = settings.use_gpu == "yes" or (settings.use_gpu == "auto" and torch.cuda.is_available())
    scorer = Scorer.options(
        num_replicas=settings.num_replicas,
        max_ongoing_requests=max(settings.max_ongoing_requests, settings.max_batch_size),
        max_queued_requests=settings.max_queued_requests,
        backpressure_config=BACKPRESSURE,
        ray_actor_options={"num_cpus": settings.num_cpus_per_replica, "num_gpus": 1 if gpu else 0},
        user_config={"max_batch_size": settings.max_batch_size, "batch_wait_timeout_s": settings.batch_wait_timeout_s},
    ).bind(settings.run_dir, "cuda" if gpu else "cpu", settings.registry_dir, settings.reload_check_s)
    app = build_fastapi(settings, categories, severities)
    submitter = Depends(Authenticator(settings).require("submitter"))

    @serve.deployment(name="ModerationAPI", max_ongoing_requests=settings.max_ongoing_requests * 4,
                      max_queued_requests=settings.max_queued_requests, backpressure_config=BACKPRESSURE,
                      ray_actor_options={"num_cpus": 0.1})
    @serve.ingress(app)
    class ModerationAPI:
        def __init__(self, scorer, settings_dict: dict, severities: dict[str, float]):
            self.service = ModerationService(scorer, ServeSettings.model_validate(settings_dict), severities)

        @app.post("/v1/moderate", response_model=ModerateResponse, openapi_extra=_moderate_openapi())
        async def moderate(self, request: Request, caller: str = submitter) -> ModerateResponse:
            return await self.service.moderate(request)

        @app.get("/v1/model", response_model=ModelInfo)
        async def model_info(self) -> dict:
            return await self.service.info()

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

    return ModerationAPI.bind(scorer, settings.model_dump(), severities)
