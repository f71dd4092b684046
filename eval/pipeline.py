"""Evaluation wired to runs: train-and-evaluate for `moderation train`, and `moderation evaluate` on a file.

A training run chooses its per-class thresholds on validation data, then reports validation and test
PR-AUC per class beside a TF-IDF + logistic-regression baseline trained on the same split, with per-source
slices and PR-curve pictures, and writes the model card. Everything lands in a staged run directory that
only appears once complete.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from eval.baseline import TfidfBaseline
from eval.metrics import mean_average_precision, per_class_metrics
from eval.model_card import write_model_card
from eval.plots import plot_pr_curves, plot_threshold_tradeoff
from eval.report import write_report
from eval.thresholds import choose_thresholds
from moderation import runfiles
from moderation.config import Config, dump_config

log = logging.getLogger(__name__)


def train_and_evaluate(config: Config, progress: bool = True, version: str | None = None) -> Path:
    from moderation.train import predict_scores, train

    out = config.output_dir()
    names = config.category_names
    started = time.perf_counter()
    with runfiles.staged_run_dir(out) as stage:
        (stage / runfiles.CONFIG).write_text(dump_config(config))
        result = train(config, mean_average_precision, progress, stage / runfiles.TRAIN_LOG)
        version = version or f"{config.run.name}-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}"
        scores = {s: predict_scores(result.model, result.features[s]) for s in ("validation", "test")}
        val = result.features["validation"]
        thresholds = choose_thresholds(val.labels, val.label_mask, scores["validation"]["fused"], names,
                                       config.thresholds.block_precision, config.thresholds.review_recall)
        runfiles.write_thresholds(stage, thresholds, config.thresholds.model_dump())
        # The validation scores are what drift monitoring compares live traffic against (`moderation monitor`).
        runfiles.write_reference_scores(stage, names, scores["validation"]["fused"], version)
        result.model.save(stage, {
            "version": version, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "zero_shot": result.zero_shot_classes, "train_positives": result.train_positives,
            "negative_rate": config.sampling.negative_rate,
            "rows": {k: len(v) for k, v in result.splits.items()},
        })
        if config.text_encoder.finetune != "frozen" and result.text_encoder is not None:
            result.text_encoder.model.save_pretrained(stage / runfiles.TEXT_ENCODER)
            result.text_encoder.tokenizer.save_pretrained(stage / runfiles.TEXT_ENCODER)
        baseline = _baseline_scores(config, result.splits) if config.run.baseline else {}
        report = write_evaluation(stage / runfiles.REPORT, names, result, scores, baseline, thresholds, version)
        seconds = {**result.seconds, "total": round(time.perf_counter() - started, 1)}
        meta = runfiles.read_json(stage / runfiles.MODEL)
        runfiles.write_json(stage / runfiles.MODEL, {**meta, "train_seconds": seconds})
        write_model_card(stage, config, version, result, report, thresholds, seconds)
    return out


def _baseline_scores(config: Config, splits) -> dict[str, np.ndarray]:
    """The TF-IDF + logistic-regression baseline, fitted on the same training rows."""
    train = splits["train"]
    texts = [t or "" for t in train["text"]]
    baseline = TfidfBaseline().fit(texts, np.asarray(train["labels"], np.float32),
                                   np.asarray(train["label_mask"], bool))
    return {s: baseline.predict_proba([t or "" for t in splits[s]["text"]]) for s in ("validation", "test")}


def write_evaluation(out_dir: Path, names: list[str], result, scores: dict, baseline: dict, thresholds: dict,
                     version: str) -> dict:
    """Per split: the model (fused, text-only, image-only where present) beside the baseline; slices by source."""
    out_dir.mkdir(parents=True, exist_ok=True)
    splits_results, slices, plots = {}, {}, []
    for split in ("validation", "test"):
        f = result.features[split]
        if not len(f):
            continue
        models = {"model": scores[split]["fused"]}
        if f.has_text.any() and f.has_image.any():
            models["text_only"], models["image_only"] = scores[split]["text"], scores[split]["image"]
        if split in baseline:
            models["tfidf_baseline"] = baseline[split]
        splits_results[split] = {
            name: per_class_metrics(f.labels, f.label_mask, s, names, thresholds if name == "model" else None)
            for name, s in models.items()}
        sources = np.asarray(result.splits[split]["source"])
        slices[split] = {src: per_class_metrics(f.labels[sources == src], f.label_mask[sources == src],
                                                scores[split]["fused"][sources == src], names, thresholds)
                         for src in sorted(set(sources))}
        if split == "test" or not plots:
            plots = _plots(out_dir, f, models, names, thresholds, split)
    meta = {"model_version": version, "rows": {k: len(v) for k, v in result.splits.items()},
            "zero_shot": result.zero_shot_classes}
    write_report(out_dir, names, splits_results, thresholds, plots, meta, slices)
    return {"splits": splits_results, "slices": slices}


def _plots(out_dir: Path, f, models: dict, names: list[str], thresholds: dict, split: str) -> list[Path]:
    for old in out_dir.glob("*.png"):
        old.unlink()
    paths = plot_pr_curves(f.labels, f.label_mask, models, names, thresholds, out_dir, title_suffix=f"({split})")
    for c, name in enumerate(names):
        known = f.label_mask[:, c]
        if known.any() and 0 < f.labels[known, c].sum() < known.sum():
            paths.append(plot_threshold_tradeoff(f.labels[known, c], models["model"][known, c], name,
                                                 thresholds.get(name), out_dir))
    return paths


def evaluate_file(run_dir: str | Path | None, data: Path, out: Path | None, progress: bool = True) -> Path:
    """Score a generic JSONL file with a run (default: the shipped model) and write a report beside it."""
    from tqdm.auto import tqdm

    from moderation.data.generic import label_field, read_jsonl_rows
    from moderation.predict import Moderator

    moderator = Moderator(run_dir)
    names = moderator.categories
    rows = read_jsonl_rows(data, names)
    results = []
    for start in tqdm(range(0, len(rows), 64), desc="score", unit="batch", disable=not progress):
        results.extend(moderator.score(rows[start:start + 64]))
    scores = np.array([[r["scores"][c] for c in names] for r in results], np.float32)
    label_mask = np.array([[row[label_field(c)] is not None for c in names] for row in rows])
    labels = np.array([[float(row[label_field(c)] or 0) for c in names] for row in rows], np.float32)
    metrics = {"model": per_class_metrics(labels, label_mask, scores, names, moderator.thresholds)}
    out = out or moderator.run_dir / f"eval-{Path(data).stem}"
    out.mkdir(parents=True, exist_ok=True)
    plots = plot_pr_curves(labels, label_mask, {"model": scores}, names, moderator.thresholds, out,
                           title_suffix=f"({Path(data).name})")
    meta = {"model_version": moderator.version, "data": str(data), "rows": {"evaluated": len(rows)}}
    write_report(out, names, {Path(data).name: metrics}, moderator.thresholds, plots, meta)
    return out
