"""The run directory: the files a training run writes and every later stage (eval, serve, retrain) reads.

Writer and readers share this one module, so a file's name and shape are defined once.

    config.yaml          the resolved config the run was trained with
    model.json           categories, head shape, zero-shot classes and calibration, prior correction, version
    head.safetensors     fusion head + zero-shot prototypes (the encoders come from their packages/folders)
    text_encoder/        only when the text encoder was fine-tuned (full weights or a LoRA adapter)
    thresholds.json      moderation.policy.Thresholds: per category review/block, how it is scored, whether it may block
    reference_scores.npz the fused scores on the validation split: the reference for live score drift
    train_log.jsonl      one line per epoch
    report/              report.md, report.json, PR-curve pictures
    MODEL_CARD.md        data, per-class PR-AUC with support, zero-shot classes, limits
"""

from __future__ import annotations

import json
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # numpy is imported where used: the CLI imports this module and must start instantly
    import numpy as np

    from moderation.policy import Thresholds

CONFIG = "config.yaml"
MODEL = "model.json"
HEAD = "head.safetensors"
TEXT_ENCODER = "text_encoder"
THRESHOLDS = "thresholds.json"
REFERENCE_SCORES = "reference_scores.npz"
TRAIN_LOG = "train_log.jsonl"
REPORT = "report"
MODEL_CARD = "MODEL_CARD.md"

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "default_model"


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def write_json(path: Path, obj: dict) -> Path:
    Path(path).write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")
    return Path(path)


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


@contextmanager
def staged_run_dir(final: Path):
    """Write a run into a temporary sibling folder and move it into place only when everything succeeded,
    so a failed run never leaves a half-written directory behind (an existing run there is replaced)."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.partial-", dir=final.parent))
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if final.exists():
        shutil.rmtree(final)
    staging.rename(final)
