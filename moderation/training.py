"""The training entry point: config -> a complete run directory, written by the library, staged until done.

`train_run` owns the run directory (see `moderation.runfiles`): it stages it, trains (`moderation.train`),
and writes the resolved config, the model (head + model.json, the text encoder when fine-tuned), the
reference scores for drift monitoring and `predictions.npz` (validation and test scores with their labels).
Choosing thresholds and writing the report and the model card is evaluation's job: the caller injects it
as `evaluate(stage_dir)`, like the early-stopping metric `compute_metrics`, so this module never imports
the evaluation package. The run appears at its final path only once both succeeded.

    >>> from eval.evaluate import evaluate_run                            # doctest: +SKIP
    >>> from eval.metrics import mean_average_precision                   # doctest: +SKIP
    >>> train_run(load_config("configs/memes.yaml"), compute_metrics=mean_average_precision,
    ...           evaluate=evaluate_run)                                  # doctest: +SKIP
    PosixPath('runs/memes')

Safety: an existing output folder, and the shipped model above all, is refused unless `overwrite=True`;
with it only the files a run writes are replaced (`runfiles.RUN_OUTPUTS`), never a user's own files.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np

from moderation import runfiles
from moderation.config import Config, dump_config
from moderation.runfiles import Predictions, SplitPredictions
from moderation.scoring import ScoreArrays, run_model
from moderation.train import MetricFn, train

log = logging.getLogger(__name__)

Evaluate = Callable[[Path], object]


def train_run(config: Config, *, compute_metrics: MetricFn, out_dir: str | Path | None = None,
              overwrite: bool = False, progress: bool = True, version: str | None = None,
              evaluate: Evaluate | None = None) -> Path:
    """Train `config` into `out_dir` (default: the config's `run.output_dir`); return the run directory.

    `compute_metrics(labels, label_mask, scores) -> float` is the early-stopping signal (higher is better);
    `evaluate(stage_dir)`, when given, runs on the finished files before the run is moved into place.
    Raises `runfiles.RunExists` for an existing folder or the shipped model without `overwrite`.
    """
    out = Path(out_dir) if out_dir is not None else config.output_dir()
    config = config.model_copy(deep=True)
    config.run.output_dir = str(out)  # the saved config says where the run really went
    started = time.perf_counter()
    with runfiles.staged_run_dir(out, overwrite=overwrite) as stage:
        (stage / runfiles.CONFIG).write_text(dump_config(config))
        result = train(config, compute_metrics, progress, stage / runfiles.TRAIN_LOG, stage / runfiles.TEXT_ENCODER)
        version = version or f"{config.run.name}-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}"
        scores = {s: run_model(result.model, result.features[s]) for s in runfiles.PREDICTION_SPLITS}
        # The validation scores are what drift monitoring compares live traffic against (`moderation monitor`).
        runfiles.write_reference_scores(stage, config.category_names, scores["validation"].fused, version)
        if config.text_encoder.finetune != "frozen" and result.text_encoder is not None:
            # LoRA: peft saves the adapter alone (a few MB), never the base weights; full: the whole model.
            result.text_encoder.model.save_pretrained(stage / runfiles.TEXT_ENCODER)
            if config.text_encoder.finetune == "full":
                result.text_encoder.tokenizer.save_pretrained(stage / runfiles.TEXT_ENCODER)
        if result.lexical is not None:
            result.lexical.save(stage / runfiles.LEXICAL)
        runfiles.write_predictions(stage, Predictions(config.category_names, version, {
            s: split_predictions(result.splits[s], scores[s]) for s in runfiles.PREDICTION_SPLITS}))
        seconds = {**result.seconds, "total": round(time.perf_counter() - started, 1)}
        result.model.save(stage, {
            "version": version, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "zero_shot": result.zero_shot_classes, "train_positives": result.train_positives,
            "negative_rate": config.sampling.negative_rate,
            "rows": {k: len(v) for k, v in result.splits.items()}, "train_seconds": seconds,
        })
        if evaluate is not None:
            evaluate(stage)
    log.info("run written to %s", out)
    return out


def split_predictions(split, scores: ScoreArrays) -> SplitPredictions:
    """One split's rows (a datasets.Dataset with id, source, labels, label_mask) beside the run's scores."""
    columns = split.select_columns(["id", "source", "labels", "label_mask"]).to_dict()
    c = len(scores.categories)
    return SplitPredictions(
        ids=np.asarray(columns["id"], dtype=str), source=np.asarray(columns["source"], dtype=str),
        labels=np.asarray(columns["labels"], np.float32).reshape(-1, c),
        label_mask=np.asarray(columns["label_mask"], bool).reshape(-1, c),
        fused=scores.fused, text=scores.text, image=scores.image, has_text=scores.has_text, has_image=scores.has_image)
