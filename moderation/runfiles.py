"""The run directory: the files a training run writes and every later stage (eval, serve, retrain) reads.

Writer and readers share this one module, so a file's name and shape are defined once.

    config.yaml          the resolved config the run was trained with
    model.json           categories, head shape, zero-shot classes and calibration, prior correction, version
    head.safetensors     fusion head + zero-shot prototypes (the encoders come from their packages/folders)
    text_encoder/        only when the text encoder was fine-tuned (full weights or a LoRA adapter)
    thresholds.json      per category {"block": t, "review": t, ...}, chosen on validation data
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

CONFIG = "config.yaml"
MODEL = "model.json"
HEAD = "head.safetensors"
TEXT_ENCODER = "text_encoder"
THRESHOLDS = "thresholds.json"
TRAIN_LOG = "train_log.jsonl"
REPORT = "report"
MODEL_CARD = "MODEL_CARD.md"

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "default_model"


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def write_json(path: Path, obj: dict) -> Path:
    Path(path).write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")
    return Path(path)


def read_thresholds(run_dir: Path) -> dict[str, dict]:
    return read_json(Path(run_dir) / THRESHOLDS)["categories"]


def write_thresholds(run_dir: Path, thresholds: dict[str, dict], targets: dict) -> Path:
    return write_json(Path(run_dir) / THRESHOLDS, {"targets": targets, "categories": thresholds})


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
