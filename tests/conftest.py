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


PG_ADMIN_URL = os.environ.get("REVIEW_QUEUE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.fixture(scope="session")
def pg_admin():
    """An autocommit admin connection to the PostgreSQL at 127.0.0.1:5432, or the reason it is unreachable."""
    psycopg = pytest.importorskip("psycopg")
    try:
        conn = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        yield f"PostgreSQL unreachable at {PG_ADMIN_URL} ({str(exc).strip()}); set REVIEW_QUEUE_TEST_PG"
        return
    yield conn
    conn.close()


def database_url(request, tmp_path, prefix: str):
    """Yield a fresh database URL for the test's backend param ("sqlite" or "postgresql"); drop it afterwards."""
    import uuid

    import sqlalchemy as sa

    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / (prefix + '.db')}"
        return
    admin = request.getfixturevalue("pg_admin")
    if isinstance(admin, str):
        pytest.skip(admin)
    name = f"{prefix}_test_{uuid.uuid4().hex[:12]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    yield sa.make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # also ends killed children's sessions
