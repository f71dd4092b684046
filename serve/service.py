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
from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError

from moderation import runfiles
from moderation.policy import Decision, Thresholds, decide

from .admission import WorkBudget
from .db import LoggedPrediction, NewItem, PredictionLog, ReviewQueue, open_prediction_log, open_queue
from .metrics import ServiceMetrics
from .requests import ParsedPost, decode_image, parse_moderate_request, read_limited_body
from .schemas import CategoryResult, ModelInfo, ModerateResponse, PostResult
from .settings import ServeSettings

log = logging.getLogger(__name__)

RETRY_AFTER_S = 1  # what a 503 asks the client to wait, in seconds
# What a caller sees when a Scorer replica died or cannot be reached: answered 503 + Retry-After, not 500.
REPLICA_GONE = (RayActorError, ActorDiedError, ActorUnavailableError, DeploymentUnavailableError)


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


def not_ready(reason: str) -> dict:
    return {"status": "not ready", "reason": reason}


def _ignore_result(future: asyncio.Future) -> None:
    """Retrieve the outcome of scoring nobody waits for any more (else asyncio logs it as never retrieved)."""
    if not future.cancelled():
        future.exception()


def run_version(run_dir: Path) -> str:
    """The model version a run directory serves as (what `Moderator.version` reports)."""
    return runfiles.read_json(Path(run_dir) / runfiles.MODEL).get("version", Path(run_dir).name)


class ModerationService:
    def __init__(self, scorer, settings: ServeSettings, severities: dict[str, float] | None = None):
        self.scorer = scorer
        self.settings, self.severities = settings, severities
        self.sampling = settings.sampling
        self.metrics = ServiceMetrics(queue_stats=lambda: self.queue().stats())
        self.rng = random.Random()
        self.thresholds = ModelThresholds(settings.run_dir, settings.registry_dir)
        self._info: dict | None = None
        self._lock = threading.Lock()
        self._queue: ReviewQueue | None = None
        self._prediction_log: PredictionLog | None = None
        self.work = WorkBudget(settings, RETRY_AFTER_S)  # admission by cost, once the posts are parsed

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

    async def info(self, version: str | None = None, refresh: bool = False) -> dict:
        """The served model (version, categories, modalities, Thresholds); refetched when a response names
        another version (a promotion in the registry), or on `refresh` (readiness: is a replica alive?)."""
        if refresh or self._info is None or (version is not None and version != self._info["model_version"]):
            info = await self.scorer.info.remote()
            info["thresholds"] = Thresholds.model_validate(info["thresholds"])
            self.thresholds.add(info["model_version"], info["thresholds"])
            self.metrics.set_model_version(info["model_version"])
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
        return await self.moderate_posts(posts, started)

    async def moderate_posts(self, posts: list[ParsedPost], started: float | None = None,
                             store: bool = True) -> ModerateResponse:
        """Score, decide, queue, log and count parsed posts: the one path every API (/v1/moderate and the
        compatible endpoints in serve.compat_*) takes. `store=False` (a caller asked that nothing be kept)
        neither enqueues for review nor writes the prediction log; the decision is the same."""
        started = time.perf_counter() if started is None else started
        cost = self.work.admit(posts)
        try:
            # Decoding a large image takes a while: off the event loop, so other requests are not held up.
            images = [await asyncio.to_thread(decode_image, p, self.settings) if p.image_bytes else None
                      for p in posts]
            scoring = [{"id": p.id, "text": p.text, "image": image} for p, image in zip(posts, images)]
            scored = await self._score(scoring, started)
        finally:
            self.work.release(cost)
        failed = [r for r in scored if "error" in r]
        if failed:
            error, post_id = failed[0]["error"], failed[0]["id"]
            field = next(p.field for p in posts if p.id == post_id)
            raise HTTPException(422, error if error.startswith(f"post {post_id!r}") else f"{field} ({post_id!r}): {error}")
        info = await self.info(scored[0]["model_version"])
        results = [await self._decide_and_queue(post, r, info["thresholds"], store) for post, r in zip(posts, scored)]
        if self.settings.prediction_log and store:
            await self._log_predictions(posts, scored, results)
        elapsed_s = time.perf_counter() - started
        self.metrics.observe_request(elapsed_s, [r["batch_size"] for r in scored], results)
        return ModerateResponse(model_version=scored[0]["model_version"], elapsed_ms=round(elapsed_s * 1000, 2),
                                results=results)

    async def _score(self, scoring: list[dict], started: float) -> list[dict]:
        """Scores from the Scorer, or 503 + Retry-After when it is at capacity, has no live replica, or cannot
        score the request within its deadline.

        Each post carries its deadline (wall clock): a Scorer drops posts whose deadline has passed instead of
        scoring them for nobody. The calls are never cancelled from here: cancelling a request inside a
        `@serve.batch` method leaked its slot in Ray 2.60 and stalled the Scorer for good (found by
        test_overload_answers_503_with_retry_after_and_recovers).
        """
        retry = {"Retry-After": str(RETRY_AFTER_S)}
        remaining = self.settings.request_deadline_s - (time.perf_counter() - started)
        deadline = time.time() + remaining
        gathered = asyncio.gather(*[self.scorer.score.remote({**p, "deadline": deadline}) for p in scoring])
        try:
            return await asyncio.wait_for(asyncio.shield(gathered), timeout=max(remaining, 0.01))
        except BackPressureError:
            raise HTTPException(503, "the model is at capacity; retry shortly", headers=retry) from None
        except asyncio.TimeoutError:
            gathered.add_done_callback(_ignore_result)
            raise HTTPException(503, f"the model could not score this request within "
                                f"{self.settings.request_deadline_s:g} s; retry shortly", headers=retry) from None
        except REPLICA_GONE as exc:
            log.warning("a scoring replica is gone (%s); answering 503", type(exc).__name__)
            raise HTTPException(503, "no scoring replica is available; retry shortly", headers=retry) from None

    async def readiness(self) -> dict:
        """{"status": "ready", "model_version"} when a scoring replica answers and the queue can be written and
        read back; else {"status": "not ready", "reason"}."""
        try:
            info = await asyncio.wait_for(self.info(refresh=True), timeout=self.settings.request_deadline_s)
        except asyncio.TimeoutError:
            return not_ready("no scoring replica answered within "
                             f"{self.settings.request_deadline_s:g} s (loading, or at capacity)")
        except REPLICA_GONE as exc:
            return not_ready(f"no scoring replica is alive ({type(exc).__name__})")
        except BackPressureError:  # alive and busy: overload is answered by shedding, not by leaving rotation
            if self._info is None:
                return not_ready("the model is at capacity and has not answered yet")
            info = self._info
        except Exception as exc:  # noqa: BLE001 - a probe reports every failure as a reason
            return not_ready(f"the model is not available: {exc}")
        try:
            await asyncio.wait_for(asyncio.to_thread(lambda: self.queue().check()), timeout=5)
        except asyncio.TimeoutError:
            return not_ready("the review queue did not answer within 5 s")
        except Exception as exc:  # noqa: BLE001
            return not_ready(f"the review queue is not usable: {exc}")
        return {"status": "ready", "model_version": info["model_version"]}

    async def _decide_and_queue(self, post: ParsedPost, scored: dict, thresholds: Thresholds,
                                store: bool = True) -> PostResult:
        decision = decide(scored["scores"], thresholds, self.sampling, self.rng)
        text, image = scored["text_scores"] or {}, scored["image_scores"] or {}
        modality = scored.get("modality") or {}
        categories = {c: CategoryResult(score=s, text_score=text.get(c), image_score=image.get(c),
                                        action=decision.category_actions[c], modality=modality.get(c))
                      for c, s in scored["scores"].items()}
        item_id = None
        if decision.to_review and store:
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
