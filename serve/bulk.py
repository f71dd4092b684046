"""Bulk scoring through Ray Data: backfills and re-scoring after a model change.

`map_batches` runs the same `Moderator` (and so the same batching and model) as the online service, so the
same code scores on one machine or on a Ray cluster. Output rows are in input order, in the prediction
format of `moderation predict`.
"""

from __future__ import annotations

import json


class BatchScorer:
    """A Ray Data callable class: loads the model once per worker, scores a batch of rows."""

    def __init__(self, run_dir: str | None):
        from moderation.moderator import Moderator

        self.moderator = Moderator(run_dir)

    def __call__(self, batch: dict) -> dict:
        posts = [{"id": str(i), "text": t, "image": im} for i, t, im in zip(batch["id"], batch["text"], batch["image"])]
        results = self.moderator.score(posts)
        return {"prediction": [json.dumps(r) for r in results]}


def score_dataset(rows: list[dict], run_dir: str | None, batch_size: int = 64, concurrency: int = 1) -> list[dict]:
    """Score rows ({"id", "text", "image"}) with Ray Data; returns prediction dicts in input order."""
    import ray

    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True
    ctx.enable_progress_bars = True
    ds = ray.data.from_items([{"id": r["id"], "text": r.get("text") or "", "image": r.get("image") or ""} for r in rows])
    ds = ds.map_batches(_restore_missing, batch_format="pandas")
    scored = ds.map_batches(BatchScorer, fn_constructor_kwargs={"run_dir": run_dir}, batch_size=batch_size,
                            concurrency=concurrency, batch_format="pandas")
    return [json.loads(row["prediction"]) for row in scored.iter_rows()]


def _restore_missing(frame):
    # Arrow has no mixed str/None columns from from_items here; "" stands for "absent" on the way in.
    frame["text"] = frame["text"].where(frame["text"] != "", None)
    frame["image"] = frame["image"].where(frame["image"] != "", None)
    return frame
