"""What the ingress does per request, independent of HTTP routing: score, decide, queue, log, count.

    parsed posts -> Scorer (batched) -> moderation.policy.decide (thresholds + sampling) -> review queue
                 -> prediction log -> metrics -> ModerateResponse

Every decision goes through `moderation.policy.decide` with the settings' `Sampling`; a post the policy sends
to review is committed to the queue, with the sampling rates in force, before the response is sent. One
instance per ingress replica; it opens its queue and prediction log lazily (after Ray has started the
replica) and keeps them for the replica's life.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from pathlib import Path

from fastapi import HTTPException, Request
from ray.serve.exceptions import BackPressureError

from moderation import runfiles
from moderation.policy import Decision, Thresholds, decide

from .db import LoggedPrediction, NewItem, PredictionLog, ReviewQueue, open_prediction_log, open_queue
from .metrics import ServiceMetrics
from .requests import ParsedPost, decode_image, parse_moderate_request, read_limited_body
from .schemas import CategoryResult, ModelInfo, ModerateResponse, PostResult
from .settings import ServeSettings

log = logging.getLogger(__name__)

RETRY_AFTER_S = 1  # what a 503 asks the client to wait, in seconds


class ModelThresholds:
    """Model version -> that version's `Thresholds`: what the reviewer page shows for an item.

    Knows the served model's thresholds (given by the Scorer, or read from `run_dir` at start) and, with a
    registry, every version's run directory, so items scored by an earlier model still show theirs.
    """

    def __init__(self, run_dir: str | None = None, registry_dir: str | None = None):
        from moderation.registry import Registry

        self._known: dict[str, Thresholds] = {}
        self._lock = threading.Lock()
        self._registry = Registry(registry_dir) if registry_dir else None
        if self._registry is None:
            try:  # known at once, so the reviewer page shows them before the first post is scored
                path = runfiles.resolve_run_dir(run_dir)
                self.add(run_version(path), runfiles.read_thresholds(path))
            except (OSError, ValueError):  # e.g. the run lives only on the Scorer's nodes: the Scorer reports it
                log.warning("could not read the served model's thresholds from %s here; waiting for the Scorer's",
                            run_dir or "the default model", exc_info=True)

    def add(self, version: str, thresholds: Thresholds) -> None:
        with self._lock:
            self._known[version] = thresholds

    def __call__(self, version: str) -> Thresholds | None:
        with self._lock:
            if version in self._known:
                return self._known[version]
        path = self._registry_run_dir(version)
        if path is None:
            return None
        try:
            thresholds = runfiles.read_thresholds(path)
        except (OSError, ValueError):
            log.exception("could not read the thresholds of model version %r in %s", version, path)
            return None
        self.add(version, thresholds)
        return thresholds

    def _registry_run_dir(self, version: str) -> Path | None:
        if self._registry is None:
            return None
        # Only the registry's own folders are looked at (a version string is never joined into a path), the
        # folder named like the version first; a run's own version may differ from its folder's name.
        names = sorted(self._registry.versions(), key=lambda name: name != version)
        for name in names:
            path = self._registry.run_dir(name)
            if (path / runfiles.MODEL).is_file() and (path / runfiles.THRESHOLDS).is_file() \
                    and run_version(path) == version:
                return path
        return None


def run_version(run_dir: Path) -> str:
    """The model version a run directory serves as (what `Moderator.version` reports)."""
    return runfiles.read_json(Path(run_dir) / runfiles.MODEL).get("version", Path(run_dir).name)


class ModerationService:
    def __init__(self, scorer, settings: ServeSettings, severities: dict[str, float] | None = None):
        self.scorer = scorer
        self.settings, self.severities = settings, severities
        self.sampling = settings.sampling
        self.metrics = ServiceMetrics()
        self.rng = random.Random()
        self.thresholds = ModelThresholds(settings.run_dir, settings.registry_dir)
        self._info: dict | None = None
        self._lock = threading.Lock()
        self._queue: ReviewQueue | None = None
        self._prediction_log: PredictionLog | None = None

    # -- what the replica holds ----------------------------------------------------------------------------

    def queue(self) -> ReviewQueue:
        """The review queue, opened (and migrated) on first use."""
        with self._lock:
            if self._queue is None:
                self._queue = open_queue(self.settings.queue_url, severities=self.severities)
            return self._queue

    def prediction_log(self) -> PredictionLog:
        s = self.settings
        with self._lock:
            if self._prediction_log is None:
                self._prediction_log = open_prediction_log(s.log_url, log_content=s.log_content,
                                                           retention_days=s.retention_days)
            return self._prediction_log

    async def info(self, version: str | None = None) -> dict:
        """The served model (version, categories, modalities, Thresholds); refetched when a response names
        another version (a promotion in the registry)."""
        if self._info is None or (version is not None and version != self._info["model_version"]):
            info = await self.scorer.info.remote()
            info["thresholds"] = Thresholds.model_validate(info["thresholds"])
            self.thresholds.add(info["model_version"], info["thresholds"])
            self._info = info
        return self._info

    async def model_info(self) -> ModelInfo:
        info = await self.info()
        return ModelInfo.of(info["model_version"], info["categories"], info["modalities"], info["thresholds"])

    # -- one request -----------------------------------------------------------------------------------------

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
        results = [await self._decide_and_queue(post, r, info["thresholds"]) for post, r in zip(posts, scored)]
        if self.settings.prediction_log:
            await self._log_predictions(posts, scored, results)
        elapsed = (time.perf_counter() - started) * 1000
        self.metrics.observe_request(elapsed, [r["batch_size"] for r in scored], results)
        return ModerateResponse(model_version=scored[0]["model_version"], elapsed_ms=round(elapsed, 2), results=results)

    async def _decide_and_queue(self, post: ParsedPost, scored: dict, thresholds: Thresholds) -> PostResult:
        decision = decide(scored["scores"], thresholds, self.sampling, self.rng)
        text, image = scored["text_scores"] or {}, scored["image_scores"] or {}
        modality = scored.get("modality") or {}
        categories = {c: CategoryResult(score=s, text_score=text.get(c), image_score=image.get(c),
                                        action=decision.category_actions[c], modality=modality.get(c))
                      for c, s in scored["scores"].items()}
        item_id = None
        if decision.to_review:
            # Answer only after the queue has committed the item: an accepted post is never lost.
            item_id = await asyncio.to_thread(self._enqueue, post, scored, decision, thresholds)
        return PostResult(id=post.id, action=decision.action, reason=decision.reason, drivers=list(decision.drivers),
                          categories=categories, review_item_id=item_id, ocr_text=scored.get("ocr_text"))

    def _enqueue(self, post: ParsedPost, scored: dict, decision: Decision, thresholds: Thresholds) -> int:
        text, image = scored["text_scores"] or {}, scored["image_scores"] or {}
        scores = {c: {"fused": s, "text": text.get(c), "image": image.get(c)} for c, s in scored["scores"].items()}
        item = NewItem(post_id=post.id, scores=scores, action=decision.action.value,
                       model_version=scored["model_version"], reason=decision.review_reason.value,
                       text=post.text, image=post.image_bytes, image_mime=post.image_mime, sampling=self.sampling,
                       ocr_text=scored.get("ocr_text"))
        item_id, _ = self.queue().enqueue(item, thresholds)
        return item_id

    async def _log_predictions(self, posts: list[ParsedPost], scored: list[dict], results: list[PostResult]) -> None:
        """Record the request's decisions (one transaction, off the event loop). A failure is logged, never
        raised: the decisions are already made and queued, and monitoring must not take moderation down."""
        entries = [LoggedPrediction(post_id=p.id, model_version=r["model_version"], scores=r["scores"],
                                    action=res.action.value, drivers=res.drivers, reason=res.reason.value,
                                    review_item_id=res.review_item_id, text=p.text, image=p.image_bytes,
                                    image_mime=p.image_mime)
                   for p, r, res in zip(posts, scored, results)]
        try:
            await asyncio.to_thread(lambda: self.prediction_log().record(entries))
        except Exception:
            log.exception("could not write %d decisions to the prediction log", len(entries))
