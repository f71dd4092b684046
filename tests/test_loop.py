"""The whole loop on tiny models: serve, moderate, review, export, retrain, gate (promote and refuse), hot reload."""

from __future__ import annotations

import io
import json
import time
import zipfile

import httpx
import pytest
import yaml

from moderation.cli import main
from moderation.registry import Registry
from tests.synthetic import CATEGORIES, MARKERS, tiny_config, write_dataset
from tests.test_serve import free_port

pytestmark = pytest.mark.slow
KEY = "loop-admin-key-0123456789"


def train_cli(config_path, registry, *overrides, reviewed=()):
    args = ["retrain", str(config_path), "--registry", str(registry), "--margin", "0.05", "-q", *overrides]
    for path in reviewed:
        args += ["--reviewed", str(path)]
    assert main(args) == 0


def test_review_decisions_flow_back_into_a_gated_promoted_model(tiny_bert, tmp_path):
    import ray
    from ray import serve as ray_serve

    from serve.app import build_app

    data = write_dataset(tmp_path / "base.jsonl", n=300, seed=21)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(tiny_config(data, tiny_bert, tmp_path / "unused")))
    registry = Registry(tmp_path / "registry")
    # A deliberately under-trained first model (one short epoch): the first model is promoted unconditionally.
    train_cli(config, registry.root, "train.epochs=1", "train.lr=0.0005", "run.name=v1")
    first = registry.current_version()
    assert first and first.startswith("v1-")
    # An under-trained model's fallback thresholds block nearly everything, and blocked posts are not
    # reviewed; pin them high so its posts are allowed and then sampled into review (random_review_rate=1).
    thresholds_file = registry.run_dir(first) / "thresholds.json"
    thresholds = json.loads(thresholds_file.read_text())
    for cut in thresholds["categories"].values():
        cut.update(block=0.99999, review=0.9999)
    thresholds_file.write_text(json.dumps(thresholds))

    port = free_port()
    settings = {"registry_dir": str(registry.root), "reload_check_s": 1.0, "queue_url": f"sqlite:///{tmp_path / 'q.db'}",
                "port": port, "random_review_rate": 1.0, "num_cpus_per_replica": 0.5,
                "api_keys": [{"name": "ops", "roles": ["admin"], "key": KEY}]}
    ray.init(num_cpus=2, include_dashboard=False, configure_logging=False, ignore_reinit_error=True)
    try:
        ray_serve.start(http_options={"host": "127.0.0.1", "port": port})
        ray_serve.run(build_app(settings), name="loop", route_prefix="/")
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60, headers={"Authorization": f"Bearer {KEY}"})
        export = review_some_posts(client, tmp_path)

        # Candidate 1: properly trained on base + reviewed labels -> better on held-out data -> promoted.
        train_cli(config, registry.root, "run.name=v2", reviewed=[export])
        second = registry.current_version()
        assert second.startswith("v2-") and second != first
        comparison = json.loads((registry.run_dir(second) / "comparison.json").read_text())
        assert comparison["promoted"] and comparison["new_mean"] > comparison["old_mean"]
        assert "reviewed" in yaml.safe_load((registry.run_dir(second) / "config.yaml").read_text())["datasets"]

        # Candidate 2: a broken training run (learning rate ~0) -> worse -> refused; v2 stays current.
        train_cli(config, registry.root, "run.name=v3", "train.lr=1e-9", "train.epochs=1", reviewed=[export])
        assert registry.current_version() == second
        refused = [v for v in registry.versions() if v.startswith("v3-")]
        assert refused and not json.loads((registry.run_dir(refused[0]) / "comparison.json").read_text())["promoted"]
        assert "REFUSED" in (registry.run_dir(refused[0]) / "comparison.md").read_text()

        # The running app takes up the promoted model without a restart.
        deadline = time.monotonic() + 60
        version = None
        while time.monotonic() < deadline:
            version = client.post("/v1/moderate", json={"id": "after", "text": "cats"}).json()["model_version"]
            if version == second:
                break
            time.sleep(1)
        assert version == second
        assert client.get("/v1/model").json()["model_version"] == second
    finally:
        ray_serve.shutdown()
        ray.shutdown()


def review_some_posts(client: httpx.Client, tmp_path):
    """Moderate synthetic posts, decide every review item with its true labels, return the export zip."""
    import random

    from tests.synthetic import make_post

    rng = random.Random(5)
    harmful = [c for c in CATEGORIES if c not in ("harassment", "self_harm")]
    for i in range(40):
        post = make_post(rng, 1000 + i, [rng.choice(harmful)] if i % 3 == 0 else [])
        r = client.post("/v1/moderate", json={"id": post["id"], "text": post["text"]})
        assert r.status_code == 200, r.text
    decided = 0
    while True:
        items = client.post("/v1/review/claim", json={"n": 20}).json()["items"]
        if not items:
            break
        for item in items:
            labels = {c: int(MARKERS[c] in item["text"].split()) for c in CATEGORIES if c != "self_harm"}
            action = "block" if any(labels.values()) else "allow"
            d = client.post(f"/v1/review/items/{item['id']}/decision", json={"action": action, "labels": labels})
            assert d.status_code == 200, d.text
            decided += 1
    assert decided >= 10
    response = client.post("/v1/review/export")
    assert response.status_code == 200
    path = tmp_path / "export.zip"
    path.write_bytes(response.content)
    assert "reviewed.jsonl" in zipfile.ZipFile(io.BytesIO(response.content)).namelist()
    return path
