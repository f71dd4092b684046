"""The run directory: the files a training run writes and every later stage (eval, serve, retrain) reads.

Writer and readers share this one module, so a file's name and shape are defined once.

    config.yaml          the resolved config the run was trained with
    model.json           categories, head shape, zero-shot classes and calibration, prior correction, version
    head.safetensors     fusion head + zero-shot prototypes (the encoders come from their packages/folders)
    text_encoder/        only when the text encoder was fine-tuned or adapted (full weights or a LoRA adapter)
    thresholds.json      moderation.policy.Thresholds: per category review/block, how it is scored, whether it may block
    reference_scores.npz the fused scores on the validation split: the reference for live score drift
    predictions.npz      validation and test scores (fused, text-only, image-only) with labels, masks, ids,
                         sources: what evaluation reads (see `Predictions`)
    train_log.jsonl      one line per epoch (of each head, with `member`, when head.members > 1; epochs that
                         trained the text encoder too, a LoRA run's or text_encoder.adapt's, say `encoder`)
    report/              report.md, report.json, PR-curve pictures
    MODEL_CARD.md        data, per-class PR-AUC with support, zero-shot classes, classes that never block, limits
    cross_source/        only when thresholds were chosen on sources the model never trained on: the held-out
                         predictions.npz and summary.json of `moderation bench cross-source` for this recipe

Training (`moderation.training`) writes everything up to predictions.npz; evaluation (`eval.evaluate`)
reads those and writes thresholds.json, report/ and MODEL_CARD.md. `RUN_OUTPUTS` lists every name a run
writes: replacing a run (`--overwrite`) replaces exactly these and keeps anything else a user put there.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # numpy is imported where used: the CLI imports this module and must start instantly
    import numpy as np

    from moderation.config import Config
    from moderation.policy import Thresholds

CONFIG = "config.yaml"
MODEL = "model.json"
HEAD = "head.safetensors"
LEXICAL = "lexical.safetensors"  # the lexical view (`moderation.lexical`), when the run has one
TEXT_ENCODER = "text_encoder"
THRESHOLDS = "thresholds.json"
REFERENCE_SCORES = "reference_scores.npz"
TRAIN_LOG = "train_log.jsonl"
REPORT = "report"
MODEL_CARD = "MODEL_CARD.md"
PREDICTIONS = "predictions.npz"
CROSS_SOURCE = "cross_source"
CROSS_SOURCE_SUMMARY = "summary.json"
CROSS_SOURCE_REFERENCE = "reference.json"  # another recipe's summary, for the card's before/after table
REVIEW_TRADEOFF_PLOT = "review_tradeoff.png"  # benign flagged vs harmful caught per review target, off-domain
EVASION = "evasion.json"
HARMLESS = "harmless.json"  # `moderation bench harmless` on this model, for its card
# Written by people, not by a run (so not in RUN_OUTPUTS: `--overwrite` keeps it): what the releasers judged
# and measured by hand, e.g. why a class did not improve. The model card shows it.
RELEASE_NOTES = "RELEASE_NOTES.md"

# A retrained run drops an old cross_source/ (the new model's thresholds come from its own validation split
# until the cross-source predictions are attached again) and an old evasion.json or harmless.json (`moderation
# bench evasion` / `harmless` measured another model).
RUN_OUTPUTS = (CONFIG, MODEL, HEAD, LEXICAL, TEXT_ENCODER, THRESHOLDS, REFERENCE_SCORES, PREDICTIONS, TRAIN_LOG, REPORT,
               MODEL_CARD, CROSS_SOURCE, EVASION, HARMLESS)
PREDICTION_SPLITS = ("validation", "test")

log = logging.getLogger(__name__)

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "default_model"


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def write_json(path: Path, obj: dict) -> Path:
    Path(path).write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")
    return Path(path)


def read_config(run_dir: Path) -> Config:
    """The resolved config a run was trained with (its dataset paths are absolute)."""
    from moderation.config import config_from_dict, read_yaml

    path = Path(run_dir) / CONFIG
    return config_from_dict(read_yaml(path), source=str(path))


def read_thresholds(run_dir: Path) -> Thresholds:
    """The run's thresholds, validated (review <= block; how each class is scored; whether it may block).

    Runs written before the typed schema (flat per-class dicts) are read too: their zero-shot classes come
    from model.json, and a class whose block target was not met (or not checkable) never blocks.
    """
    from pydantic import ValidationError

    from moderation.policy import Thresholds

    path = Path(run_dir) / THRESHOLDS
    tree = read_json(path)
    if tree.get("categories") and all("scoring" not in v for v in tree["categories"].values()):
        model = Path(run_dir) / MODEL
        zero_shot = read_json(model).get("zero_shot", {}) if model.is_file() else {}
        tree = legacy_thresholds(tree, set(zero_shot))
    try:
        return Thresholds.model_validate(tree)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ValueError(f"{path}: {problems}") from None


def legacy_thresholds(tree: dict, zero_shot: set[str]) -> dict:
    """A pre-schema thresholds.json ({"targets", "categories": {c: flat dict}}) in the typed schema's shape."""
    kept = {"review", "block", "block_target_met", "source"}
    return {"targets": tree.get("targets", {}), "categories": {
        c: {**{k: v for k, v in entry.items() if k in kept},
            "scoring": "zero_shot" if c in zero_shot else "trained",
            "measured": {k: v for k, v in entry.items() if k not in kept}}
        for c, entry in tree["categories"].items()}}


def write_thresholds(run_dir: Path, thresholds: Thresholds) -> Path:
    return write_json(Path(run_dir) / THRESHOLDS, thresholds.model_dump(mode="json"))


def write_reference_scores(run_dir: Path, categories: list[str], scores, model_version: str) -> Path:
    """Save the (N, C) fused validation scores as the model's reference distribution (float32, no labels)."""
    import numpy as np

    scores = np.asarray(scores, dtype=np.float32)
    if scores.ndim != 2 or scores.shape[1] != len(categories):
        raise ValueError(f"reference scores of shape {scores.shape} do not match {len(categories)} categories")
    path = Path(run_dir) / REFERENCE_SCORES
    np.savez_compressed(path, scores=scores, categories=np.array(categories, dtype=str),
                        model_version=np.array(model_version, dtype=str))
    return path


def read_reference_scores(run_dir: Path) -> tuple[list[str], np.ndarray]:
    """(categories, (N, C) scores); FileNotFoundError naming the file for runs trained before it was written."""
    import numpy as np

    path = Path(run_dir) / REFERENCE_SCORES
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} has no {REFERENCE_SCORES} (runs trained before score-drift "
                                "monitoring lack it); retrain, or monitor a newer run")
    with np.load(path, allow_pickle=False) as data:
        return [str(c) for c in data["categories"]], data["scores"].astype(np.float64)


def resolve_run_dir(run_dir: str | Path | None) -> Path:
    """The given run directory, or the shipped default model; an error names what is missing."""
    path = Path(run_dir) if run_dir else DEFAULT_MODEL_DIR
    for name in (MODEL, HEAD, CONFIG, THRESHOLDS):
        if not (path / name).is_file():
            raise FileNotFoundError(f"{path} is not a run directory: {name} is missing")
    return path


class RunExists(FileExistsError):
    """Training would replace an existing run directory (or the shipped model) without `overwrite`."""


def check_writable(final: Path, overwrite: bool) -> None:
    """Refuse to train into an existing folder, and above all into the shipped model, unless `overwrite`."""
    final = Path(final)
    if overwrite:
        return
    if final.resolve() == DEFAULT_MODEL_DIR.resolve():
        raise RunExists(f"{final} is the shipped default model; training would replace it. Write the run "
                        "elsewhere (run.output_dir=...) or pass --overwrite (overwrite=True) to rebuild it")
    if final.exists() and (not final.is_dir() or any(final.iterdir())):
        raise RunExists(f"{final} already exists; pass --overwrite (overwrite=True) to replace the files a run "
                        f"writes there ({', '.join(RUN_OUTPUTS)}; other files are kept), or choose another "
                        "run.name / run.output_dir")


@contextmanager
def staged_run_dir(final: Path, overwrite: bool = False):
    """Write a run into a temporary sibling folder and move it into place only when everything succeeded,
    so a failed run never leaves a half-written directory behind.

    An existing `final` is refused unless `overwrite` (see `check_writable`); with it, only the run's own
    files (`RUN_OUTPUTS`) are replaced, a stale one the new run did not write (an old fine-tuned
    text_encoder/) is removed, and every other file in the folder is left alone.
    """
    final = Path(final)
    check_writable(final, overwrite)
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.partial-", dir=final.parent))
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if not final.exists() or not any(final.iterdir()):
        if final.exists():
            final.rmdir()
        staging.rename(final)  # the common case: one atomic rename
        return
    _replace_run_files(staging, final)


def _replace_run_files(staging: Path, final: Path) -> None:
    unknown = sorted(p.name for p in staging.iterdir() if p.name not in RUN_OUTPUTS)
    if unknown:  # a writer that adds a file must add it to RUN_OUTPUTS, or --overwrite would never replace it
        shutil.rmtree(staging, ignore_errors=True)
        raise ValueError(f"run wrote {unknown}, which are not in runfiles.RUN_OUTPUTS")
    # Old run files move aside first and are deleted last, so the window without a complete run is short.
    old = Path(tempfile.mkdtemp(prefix=f".{final.name}.old-", dir=final.parent))
    for name in RUN_OUTPUTS:
        if (final / name).exists() or (final / name).is_symlink():
            (final / name).rename(old / name)
    for item in staging.iterdir():
        item.rename(final / item.name)
    kept = sorted(p.name for p in final.iterdir() if p.name not in RUN_OUTPUTS)
    if kept:
        log.info("%s: replaced the run's files, kept %s", final, kept)
    staging.rmdir()
    shutil.rmtree(old)


@dataclass
class SplitPredictions:
    """One split's rows as a run scored them: the input to thresholds, reports and the model card."""

    ids: np.ndarray  # (N,) str
    source: np.ndarray  # (N,) str, the dataset each row came from
    labels: np.ndarray  # (N, C) float32, 0 where unknown
    label_mask: np.ndarray  # (N, C) bool, True where the label is known
    fused: np.ndarray  # (N, C) float32, what the policy acts on
    text: np.ndarray  # (N, C) float32, text-only head; meaningless where has_text is False
    image: np.ndarray  # (N, C) float32, image-only head; meaningless where has_image is False
    has_text: np.ndarray  # (N,) bool
    has_image: np.ndarray  # (N,) bool

    FIELDS = ("ids", "source", "labels", "label_mask", "fused", "text", "image", "has_text", "has_image")

    def __len__(self) -> int:
        return len(self.ids)

    def __post_init__(self) -> None:
        n = len(self.ids)
        bad = {k: len(getattr(self, k)) for k in self.FIELDS if len(getattr(self, k)) != n}
        if bad:
            raise ValueError(f"predictions: every field needs {n} rows (one per id), got {bad}")


@dataclass
class Predictions:
    """`predictions.npz`: a run's validation and test scores, in the run's category order."""

    categories: list[str]
    model_version: str
    splits: dict[str, SplitPredictions]  # "validation", "test"


def write_predictions(run_dir: Path, predictions: Predictions) -> Path:
    """Save as one npz: `categories`, `model_version`, and per split `<split>.<field>` (no pickles)."""
    import numpy as np

    arrays = {"categories": np.array(predictions.categories, dtype=str),
              "model_version": np.array(predictions.model_version, dtype=str)}
    for split, p in predictions.splits.items():
        if split not in PREDICTION_SPLITS:
            raise ValueError(f"predictions: split {split!r} is not one of {list(PREDICTION_SPLITS)}")
        for name in ("labels", "fused", "text", "image"):
            if np.shape(getattr(p, name))[1:] != (len(predictions.categories),):
                raise ValueError(f"predictions {split}.{name}: shape {np.shape(getattr(p, name))} does not match "
                                 f"{len(predictions.categories)} categories")
        arrays.update({f"{split}.{k}": np.asarray(getattr(p, k)) for k in SplitPredictions.FIELDS})
        for k in ("ids", "source"):
            arrays[f"{split}.{k}"] = np.asarray(getattr(p, k), dtype=str)
    path = Path(run_dir) / PREDICTIONS
    np.savez_compressed(path, **arrays)
    return path


def read_predictions(run_dir: Path) -> Predictions:
    """The run's predictions; FileNotFoundError naming the file (and how to write it) for older runs."""
    import numpy as np

    path = Path(run_dir) / PREDICTIONS
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} has no {PREDICTIONS} (runs trained before it was written lack it); "
                                "write it with eval.evaluate.write_predictions(run_dir)")
    with np.load(path, allow_pickle=False) as data:
        splits = {s: SplitPredictions(**{k: data[f"{s}.{k}"] for k in SplitPredictions.FIELDS})
                  for s in PREDICTION_SPLITS if f"{s}.ids" in data.files}
        return Predictions([str(c) for c in data["categories"]], str(data["model_version"]), splits)
