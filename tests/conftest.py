"""Shared fixtures. Offline by construction: the hub is switched off before anything imports transformers."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MPLBACKEND", "Agg")

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"


def require_shared_data(*names: str) -> Path:
    """Skip (with the reason) when ../shared/data, or one of the named dataset folders, is absent."""
    for name in names or ("",):
        if not (SHARED_DATA / name).exists():
            pytest.skip(f"needs {SHARED_DATA / name} (public datasets live outside the repo)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    from tests.tiny_models import build_tiny_bert

    return build_tiny_bert(tmp_path_factory.mktemp("tiny") / "bert")


@pytest.fixture(scope="session")
def tiny_vit(tmp_path_factory) -> Path:
    from tests.tiny_models import build_tiny_vit

    return build_tiny_vit(tmp_path_factory.mktemp("tiny") / "vit")


@pytest.fixture(scope="session")
def tiny_clip_vision(tmp_path_factory) -> Path:
    from tests.tiny_models import build_tiny_clip_vision

    return build_tiny_clip_vision(tmp_path_factory.mktemp("tiny") / "clip_vision")


@pytest.fixture(scope="session")
def multimodal_run(tiny_bert, tiny_vit, tmp_path_factory) -> Path:
    """A trained run directory (tiny text + tiny ViT, late fusion) on synthetic posts with images."""
    import yaml

    from moderation.cli import main
    from tests.synthetic import tiny_config, write_dataset

    tmp = tmp_path_factory.mktemp("multimodal")
    data = write_dataset(tmp / "data" / "train.jsonl", n=240, seed=11, images=True)
    tree = tiny_config(data, tiny_bert, tmp / "run", image_encoder={"kind": "transformers", "model": str(tiny_vit)},
                       train={"epochs": 15})
    (tmp / "config.yaml").write_text(yaml.safe_dump(tree))
    assert main(["train", str(tmp / "config.yaml"), "-q"]) == 0
    return tmp / "run"
