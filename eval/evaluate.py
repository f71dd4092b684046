"""Evaluation of a run directory, and of a run on a labelled file.

`evaluate_run(run_dir)` reads what training wrote (config.yaml, model.json, predictions.npz) and writes
what evaluation owns: thresholds.json (chosen on the validation scores; once `attach_cross_source` put
predictions for sources the model never trained on in the run, the block thresholds come from those;
zero-shot classes marked so that they never block), report/ (validation and test PR-AUC per class beside a TF-IDF + logistic-regression
baseline trained on the same split, text-only and image-only heads where both modalities occur, slices by
source, PR-curve pictures) and MODEL_CARD.md. It can be re-run on any run that has predictions.npz
(`moderation evaluate --run DIR`). `train_and_evaluate` is `moderation train`: the library's
`train_run` with this module's metric and evaluation injected.

`write_predictions(run_dir)` writes predictions.npz for a run trained before that file existed (the shipped
model), so `evaluate_run` can then rewrite its thresholds, report and card without retraining.

`evaluate_file(run_dir, data)` scores a generic JSONL file through `Moderator.score_arrays` and writes a
report under the working directory (never inside the installed package).
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np

from eval.baseline import TfidfBaseline
from eval.metrics import mean_average_precision, per_class_metrics
from eval.model_card import write_model_card
from eval.plots import plot_pr_curves, plot_threshold_tradeoff
from eval.report import write_report
from eval.thresholds import block_off_domain, choose_thresholds, false_block_bound
from moderation import runfiles
from moderation.config import Config
from moderation.policy import Thresholds
from moderation.runfiles import Predictions, SplitPredictions

log = logging.getLogger(__name__)


def train_and_evaluate(config: Config, **kwargs) -> Path:
    """`moderation train`: train a run (`moderation.training.train_run`, same keyword arguments) and evaluate
    it before it is moved into place."""
    from functools import partial

    from moderation.training import train_run

    evaluate = partial(evaluate_run, progress=kwargs.get("progress", True))
    return train_run(config, compute_metrics=mean_average_precision, evaluate=evaluate, **kwargs)


def evaluate_run(run_dir: str | Path, progress: bool = True, baseline: bool | None = None) -> dict:
    """Write thresholds.json, report/ and MODEL_CARD.md into `run_dir` from its predictions.npz.

    `baseline` (default: the config's `run.baseline`) refits the TF-IDF baseline on the run's training
    split, rebuilt from its config (the datasets must be where the config says). Returns
    {"thresholds": Thresholds, "splits": {split: {model: per_class_metrics}}, "slices": {...}}.
    """
    run_dir = Path(run_dir)
    config = runfiles.read_config(run_dir)
    meta = runfiles.read_json(run_dir / runfiles.MODEL)
    predictions = runfiles.read_predictions(run_dir)
    names = list(meta["categories"])
    if predictions.categories != names:
        raise ValueError(f"{run_dir / runfiles.PREDICTIONS}: categories {predictions.categories} differ from "
                         f"model.json's {names}")
    if "validation" not in predictions.splits:
        raise ValueError(f"{run_dir / runfiles.PREDICTIONS} has no validation split to choose thresholds on")
    val = predictions.splits["validation"]
    # Whole classes scored by prototypes are zero-shot. "sexual (images)" (the open_nsfw classifier on images,
    # its fused score validated like any other) is listed on the card but does not stop the class blocking.
    zero_shot = [c for c in meta.get("zero_shot", {}) if c in names]
    # Blocking holds off-domain only when chosen off-domain: with cross_source/ attached, the block thresholds
    # come from fold models' predictions for sources they never trained on (eval.thresholds.block_off_domain).
    held_out, cross_summary = read_cross_source(run_dir, names)
    targets = (config.thresholds.block_precision, config.thresholds.review_recall)
    thresholds = choose_thresholds(val.labels, val.label_mask, val.fused, names, *targets, zero_shot=zero_shot,
                                   **false_block_bound(config, val.source))
    if held_out is not None:  # blocks must hold off-domain: block thresholds from the held-out sources
        thresholds = block_off_domain(choose_thresholds(held_out.labels, held_out.label_mask, held_out.fused, names,
                                                        *targets, zero_shot=zero_shot, source="cross_source",
                                                        **false_block_bound(config, held_out.source)),
                                      thresholds)
    use_baseline = config.run.baseline if baseline is None else baseline
    baseline_scores = _baseline_scores(config, predictions.splits) if use_baseline else {}
    # Written only once everything is computed: a failed re-evaluation leaves the run as it was.
    runfiles.write_thresholds(run_dir, thresholds)
    version = meta.get("version", run_dir.name)
    report = write_evaluation(run_dir / runfiles.REPORT, names, predictions.splits, baseline_scores, thresholds,
                              {"model_version": version, "rows": meta.get("rows", {}),
                               "zero_shot": meta.get("zero_shot", {})})
    write_model_card(run_dir, config, meta, report, thresholds, cross_summary,
                     read_measured(run_dir, runfiles.EVASION, version),
                     read_measured(run_dir, runfiles.HARMLESS, version, thresholds))
    log.info("evaluated %s: thresholds, report and model card written", run_dir)
    return {"thresholds": thresholds, **report}


def read_measured(run_dir: Path, name: str, version: str, thresholds: Thresholds | None = None) -> dict | None:
    """What a benchmark kept in the run (`runfiles.EVASION`, `runfiles.HARMLESS`), when it measured this very
    model (same version) and, for figures that depend on them (decisions), at the run's `thresholds` now."""
    path = Path(run_dir) / name
    if not path.is_file():
        return None
    measured = runfiles.read_json(path)
    if measured.get("version") != version:
        log.warning("%s measured model %r, not %r: left out of the model card", path, measured.get("version"), version)
        return None
    if thresholds is not None and measured.get("thresholds") != thresholds.model_dump(mode="json"):
        log.warning("%s was measured at other thresholds than the run's now: left out of the model card (measure "
                    "it again)", path)
        return None
    return measured


def read_cross_source(run_dir: Path, names: list[str]) -> tuple[SplitPredictions | None, dict | None]:
    """The held-out predictions and summary attached by `attach_cross_source`, or (None, None)."""
    folder = Path(run_dir) / runfiles.CROSS_SOURCE
    if not folder.is_dir():
        return None, None
    predictions = runfiles.read_predictions(folder)
    if predictions.categories != names:
        raise ValueError(f"{folder}: categories {predictions.categories} differ from the run's {names}")
    summary = runfiles.read_json(folder / runfiles.CROSS_SOURCE_SUMMARY)
    if (folder / runfiles.CROSS_SOURCE_REFERENCE).is_file():
        summary = {**summary, "reference": runfiles.read_json(folder / runfiles.CROSS_SOURCE_REFERENCE)}
    return predictions.splits["test"], summary


def read_reference(compare_to: str | Path) -> dict:
    """Another recipe's cross-source summary (`moderation bench cross-source` wrote it into `compare_to`)."""
    path = Path(compare_to) / runfiles.CROSS_SOURCE_SUMMARY
    if not path.is_file():
        raise FileNotFoundError(f"{compare_to}: no {runfiles.CROSS_SOURCE_SUMMARY} to compare with "
                                "(write it with `moderation bench cross-source --label ...`)")
    return runfiles.read_json(path)


def attach_cross_source(run_dir: str | Path, cross_dir: str | Path, progress: bool = True,
                        compare_to: str | Path | None = None) -> dict:
    """Choose `run_dir`'s block thresholds on the held-out predictions of `moderation bench cross-source` (the
    folder `<out>/<label>` it wrote for the same recipe; review thresholds stay on validation, see
    `eval.thresholds.block_off_domain`), copy them into the run and re-evaluate it.

    Refused when the benchmark's recipe is not the run's (`Config.recipe`): thresholds chosen for another
    model's scores would not mean what they say. `compare_to` is another recipe's folder (e.g. the recipe this
    run replaces): its summary is kept beside, and the card compares the two per class and per decision rate."""
    run_dir, cross_dir = Path(run_dir), Path(cross_dir)
    summary_path = cross_dir / runfiles.CROSS_SOURCE_SUMMARY
    if not summary_path.is_file() or not (cross_dir / runfiles.PREDICTIONS).is_file():
        raise FileNotFoundError(f"{cross_dir}: no {runfiles.CROSS_SOURCE_SUMMARY} and {runfiles.PREDICTIONS} "
                                "(write them with `moderation bench cross-source`)")
    theirs, ours = runfiles.read_json(summary_path).get("recipe"), runfiles.read_config(run_dir).recipe()
    if theirs != ours:
        differ = sorted(k for k in set(ours) | set(theirs or {}) if (theirs or {}).get(k) != ours.get(k))
        raise ValueError(f"{cross_dir} was measured for another recipe than {run_dir} (config sections that differ: "
                         f"{', '.join(differ)}); rerun `moderation bench cross-source` with the run's config")
    reference = None if compare_to is None else read_reference(compare_to)
    target = run_dir / runfiles.CROSS_SOURCE
    target.mkdir(exist_ok=True)
    for name in (runfiles.PREDICTIONS, runfiles.CROSS_SOURCE_SUMMARY):
        shutil.copyfile(cross_dir / name, target / name)
    (target / runfiles.REVIEW_TRADEOFF_PLOT).unlink(missing_ok=True)
    if (cross_dir / runfiles.REVIEW_TRADEOFF_PLOT).is_file():  # measured by benchmarks since 2026-11-27
        shutil.copyfile(cross_dir / runfiles.REVIEW_TRADEOFF_PLOT, target / runfiles.REVIEW_TRADEOFF_PLOT)
    (target / runfiles.CROSS_SOURCE_REFERENCE).unlink(missing_ok=True)
    if reference is not None:
        runfiles.write_json(target / runfiles.CROSS_SOURCE_REFERENCE, reference)
    return evaluate_run(run_dir, progress=progress)


def write_predictions(run_dir: str | Path, progress: bool = True, batch_size: int = 64) -> Path:
    """Write `predictions.npz` for an existing run: its validation and test splits, rebuilt from its config.yaml
    (the datasets must be where the config says), scored through `Moderator.score_arrays`, the path serving
    uses. Nothing else in the run directory changes; `evaluate_run(run_dir)` can follow."""
    from moderation.data.build import build_splits
    from moderation.moderator import Moderator
    from moderation.training import split_predictions

    moderator = Moderator(run_dir)
    splits = build_splits(moderator.config, only_eval=True)
    out = {}
    for name in runfiles.PREDICTION_SPLITS:
        rows = splits[name].select_columns(["id", "text", "image"]).to_dict()
        posts = [{"id": i, "text": t, "image": im} for i, t, im in zip(rows["id"], rows["text"], rows["image"])]
        log.info("scoring the %s split of %s (%d posts)", name, moderator.run_dir, len(posts))
        out[name] = split_predictions(splits[name], moderator.score_arrays(posts, batch_size, progress))
    return runfiles.write_predictions(moderator.run_dir, Predictions(moderator.categories, moderator.version, out))


def _baseline_scores(config: Config, splits: dict[str, SplitPredictions]) -> dict[str, np.ndarray]:
    """The TF-IDF + logistic-regression baseline fitted on the run's training rows, scored on its splits."""
    from moderation.data.build import build_splits

    rebuilt = build_splits(config)
    for name, p in splits.items():
        ids = np.asarray(rebuilt[name]["id"], dtype=str)
        if not np.array_equal(ids, p.ids):
            raise ValueError(f"the {name} split rebuilt from the run's config has {len(ids)} rows that do not match "
                             f"the {len(p)} in {runfiles.PREDICTIONS} (the data changed since training?); "
                             "evaluate with baseline=False")
    train = rebuilt["train"]
    baseline = TfidfBaseline().fit([t or "" for t in train["text"]], np.asarray(train["labels"], np.float32),
                                   np.asarray(train["label_mask"], bool))
    return {s: baseline.predict_proba([t or "" for t in rebuilt[s]["text"]]) for s in splits}


def write_evaluation(out_dir: Path, names: list[str], splits: dict[str, SplitPredictions], baseline: dict,
                     thresholds, meta: dict) -> dict:
    """Per split: the model (fused, text-only, image-only where both occur) beside the baseline; slices by source."""
    out_dir.mkdir(parents=True, exist_ok=True)
    results, slices, plots = {}, {}, []
    for split in runfiles.PREDICTION_SPLITS:
        p = splits.get(split)
        if p is None or not len(p):
            continue
        models = {"model": p.fused}
        if p.has_text.any() and p.has_image.any():
            models["text_only"], models["image_only"] = p.text, p.image
        if split in baseline:
            models["tfidf_baseline"] = baseline[split]
        results[split] = {name: per_class_metrics(p.labels, p.label_mask, s, names, thresholds if name == "model" else None)
                          for name, s in models.items()}
        slices[split] = {src: per_class_metrics(p.labels[p.source == src], p.label_mask[p.source == src],
                                                p.fused[p.source == src], names, thresholds)
                         for src in sorted(set(p.source.tolist()))}
        if split == "test" or not plots:  # the test split's pictures when there is one
            for old in out_dir.glob("*.png"):  # an earlier evaluation's pictures would be linked by nothing
                old.unlink()
            plots = _plots(out_dir, p, models, names, thresholds, split)
    write_report(out_dir, names, results, thresholds, plots, meta, slices)
    return {"splits": results, "slices": slices}


def _plots(out_dir: Path, p: SplitPredictions, models: dict, names: list[str], thresholds, split: str) -> list[Path]:
    paths = plot_pr_curves(p.labels, p.label_mask, models, names, thresholds, out_dir, title_suffix=f"({split})")
    for c, name in enumerate(names):
        known = p.label_mask[:, c]
        if known.any() and 0 < p.labels[known, c].sum() < known.sum():
            paths.append(plot_threshold_tradeoff(p.labels[known, c], models["model"][known, c], name,
                                                 thresholds[name], out_dir))
    return paths


def default_output(prefix: str, data: str | Path) -> Path:
    """`./<prefix>-<data name>` under the working directory: reports never go inside the installed package."""
    return Path.cwd() / f"{prefix}-{Path(data).stem}"


def evaluate_file(run_dir: str | Path | None, data: str | Path, out: str | Path | None = None,
                  progress: bool = True) -> Path:
    """Score a generic JSONL file with a run (default: the shipped model); write a report into `out`
    (default `./eval-<data name>`); return `out`."""
    from moderation.data.generic import label_field, read_jsonl_rows
    from moderation.moderator import Moderator

    moderator = Moderator(run_dir)
    names = moderator.categories
    rows = read_jsonl_rows(Path(data), names)
    posts = [{"id": str(r["id"]), "text": r.get("text"), "image": r.get("image")} for r in rows]
    scores = moderator.score_arrays(posts, progress=progress).fused
    label_mask = np.array([[row[label_field(c)] is not None for c in names] for row in rows], bool).reshape(-1, len(names))
    labels = np.array([[float(row[label_field(c)] or 0) for c in names] for row in rows], np.float32).reshape(-1, len(names))
    metrics = {"model": per_class_metrics(labels, label_mask, scores, names, moderator.thresholds)}
    out = Path(out) if out is not None else default_output("eval", data)
    out.mkdir(parents=True, exist_ok=True)
    plots = plot_pr_curves(labels, label_mask, {"model": scores}, names, moderator.thresholds, out,
                           title_suffix=f"({Path(data).name})")
    meta = {"model_version": moderator.version, "data": str(data), "rows": {"evaluated": len(rows)}}
    write_report(out, names, {Path(data).name: metrics}, moderator.thresholds, plots, meta)
    return out
