"""The whole loop on tiny models: serve, moderate, review, export, retrain, gate (promote and refuse), hot reload.

The gate's rules are unit tests (no Ray); the loop through a running service is an integration test."""

from __future__ import annotations

import io
import json
import time
import zipfile
from pathlib import Path

import httpx
import pytest
import yaml

from eval.promotion import blocking_problems, retrain, reviewed_files
from moderation import runfiles
from moderation.cli import main
from moderation.config import config_from_dict
from moderation.policy import ClassThresholds, Scoring, Thresholds
from moderation.registry import Registry
from tests.synthetic import CATEGORIES, MARKERS, tiny_config, write_dataset

KEY = "loop-admin-key-0123456789"


def train_cli(config_path, registry, *overrides, reviewed=()):
    args = ["retrain", str(config_path), "--registry", str(registry), "--margin", "0.05", "-q", *overrides]
    for path in reviewed:
        args += ["--reviewed", str(path)]
    assert main(args) == 0


def fake_run(path, zero_shot=(), **classes) -> Path:
    """A run directory with just model.json and thresholds.json: all the blocking rules read."""
    path.mkdir(parents=True)
    runfiles.write_json(path / runfiles.MODEL, {"categories": list(classes), "zero_shot": {c: "labels" for c in zero_shot}})
    runfiles.write_thresholds(path, Thresholds(targets={"block_precision": 0.9}, categories=classes))
    return path


def blocks(precision=0.95, **kw):
    return ClassThresholds(review=0.3, block=0.7, block_target_met=True, measured={"block_precision": precision}, **kw)


def test_blocking_rules(tmp_path):
    safe = fake_run(tmp_path / "safe", ["self_harm"], hate=blocks(),
                    self_harm=ClassThresholds(review=0.3, block=0.7, block_target_met=True, scoring=Scoring.ZERO_SHOT))
    assert blocking_problems(safe) == []
    # A zero-shot class written as trained (hand-edited or an old writer) would block: refused.
    unsafe = fake_run(tmp_path / "unsafe", ["self_harm"], hate=blocks(), self_harm=blocks())
    assert blocking_problems(unsafe) == ["self_harm: scored zero-shot, but thresholds.json marks it trained (it could block)"]
    # "Target met" that the measured precision contradicts is not trusted.
    assert "below the target 0.9" in blocking_problems(fake_run(tmp_path / "low", hate=blocks(precision=0.5)))[0]
    # A class that blocks now and would only review in the candidate.
    lost = fake_run(tmp_path / "lost", hate=ClassThresholds(review=0.3, block=0.7, block_target_met=False))
    problems = blocking_problems(lost, previous=runfiles.read_thresholds(safe))
    assert problems == ["hate: blocks in the current model but would not in the candidate (block threshold missed "
                        "its precision target: sends to review at most); its blocks would all go to review"]


def test_reviewed_files_unpack_the_export_zip(tmp_path):
    export = tmp_path / "export-1.zip"
    with zipfile.ZipFile(export, "w") as archive:
        archive.writestr("reviewed.jsonl", '{"id": "a", "text": "cats", "labels": {}}\n')
        archive.writestr("README.txt", "not extracted")
    plain = tmp_path / "more.jsonl"
    plain.write_text("")
    files = reviewed_files([export, plain], tmp_path / "registry")
    assert files == [tmp_path / "registry" / "reviewed" / "export-1" / "reviewed.jsonl", plain]
    assert files[0].read_text().startswith('{"id": "a"') and not (files[0].parent / "README.txt").exists()
    with pytest.raises(FileNotFoundError, match="missing.zip"):
        reviewed_files([tmp_path / "missing.zip"], tmp_path / "registry")


def test_retrain_promotes_the_first_and_refuses_worse_or_unsafe_candidates(tiny_bert, tmp_path):
    # Half the posts harmful: enough positives per class in validation for block thresholds that block five.
    data = write_dataset(tmp_path / "base.jsonl", n=300, seed=21, positive_rate=0.5)
    registry = Registry(tmp_path / "registry")

    def candidate(name, **sections):
        return config_from_dict(tiny_config(data, tiny_bert, tmp_path / "unused", run={"name": name, "baseline": False}, **sections))

    first = retrain(candidate("v1", train={"epochs": 8}), [], registry, margin=0.05, progress=False)
    assert first.promoted and registry.current_version() == first.new_version
    assert [c for c, m in first.per_class.items() if m["blocks_new"]]  # marker words: some class earns its block
    worse = retrain(candidate("v2", train={"epochs": 1, "lr": 1e-9}), [], registry, margin=0.05, progress=False)
    assert not worse.promoted and registry.current_version() == first.new_version
    assert any("mean PR-AUC did not improve" in r for r in worse.reasons)
    assert "REFUSED" in worse.report.read_text()
    # All but the best-supported class zero-shot: they may no longer block, so the candidate is refused
    # whatever its PR-AUC (margin 1).
    positives = runfiles.read_json(registry.run_dir(first.new_version) / runfiles.MODEL)["train_positives"]
    most = max(positives.values())
    lost = [c for c, m in first.per_class.items() if m["blocks_new"] and positives[c] < most]
    assert lost
    unsafe = retrain(candidate("v3", train={"epochs": 8}, zero_shot={"min_train_positives": most}), [], registry,
                     margin=1.0, progress=False)
    assert not unsafe.promoted and registry.current_version() == first.new_version
    for c in lost:
        assert any(r.startswith(f"{c}: blocks in the current model but would not") for r in unsafe.reasons)
    assert json.loads(unsafe.report.with_suffix(".json").read_text())["promoted"] is False


@pytest.mark.integration
@pytest.mark.slow
def test_review_decisions_flow_back_into_a_gated_promoted_model(tiny_bert, tmp_path):
    import ray
    from ray import serve as ray_serve

    from serve.app import build_app
    from tests.test_serve import free_port

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
