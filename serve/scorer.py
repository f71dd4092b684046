"""The `Scorer` deployment: holds the model and scores posts in batches (`@serve.batch`), on a GPU when present.

The ingress sends one post per call, so posts from concurrent requests share a batch. Batch size and wait
arrive through `reconfigure` (live-changeable `user_config`); the `@serve.batch` defaults are the settings'
defaults (`serve.settings`), the one place they are set.
"""

import asyncio
import logging
import time

from ray import serve

from .settings import default

log = logging.getLogger(__name__)


@serve.deployment(name="Scorer")
class Scorer:
    def __init__(self, run_dir: str | None, device: str = "cpu", registry_dir: str | None = None,
                 reload_check_s: float = default("reload_check_s")):
        from moderation.moderator import Moderator
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
            from moderation.moderator import Moderator

            log.info("loading newly promoted model %s", current.name)
            self.moderator = await asyncio.to_thread(Moderator, current, self.device)

    def reconfigure(self, user_config: dict) -> None:
        self.score.set_max_batch_size(int(user_config["max_batch_size"]))
        self.score.set_batch_wait_timeout_s(float(user_config["batch_wait_timeout_s"]))

    def info(self) -> dict:
        """The served model: version, categories, modalities and its thresholds (as JSON-ready data)."""
        m = self.moderator
        return {"model_version": m.version, "categories": m.categories, "modalities": m.modalities,
                "thresholds": m.thresholds.model_dump(mode="json")}

    @serve.batch(max_batch_size=default("max_batch_size"), batch_wait_timeout_s=default("batch_wait_timeout_s"))
    async def score(self, posts: list[dict]) -> list[dict]:
        await self._maybe_reload()
        # A post past its request's deadline was already answered 503 by the ingress: drop it unscored, so an
        # overloaded replica spends its time on requests someone still waits for.
        now = time.time()
        live = [p for p in posts if p.get("deadline") is None or p["deadline"] > now]
        if len(live) < len(posts):
            log.info("dropped %d posts past their deadline", len(posts) - len(live))
        scored, alive = iter(self._score_batch([{k: v for k, v in p.items() if k != "deadline"} for p in live])), \
            {id(p) for p in live}
        return [next(scored) if id(p) in alive else {"id": p.get("id"), "error": "expired: past the request's deadline"}
                for p in posts]

    def _score_batch(self, posts: list[dict]) -> list[dict]:
        if not posts:
            return []
        try:
            # A post the model cannot score (e.g. nothing it reads) is answered with its reason, not an exception.
            results = self.moderator.score(posts, unscorable="mark")
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
