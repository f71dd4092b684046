"""Bulk scoring through Ray Data gives the same scores as `moderation predict` on the same rows."""

import json

import pytest

from moderation.cli import main

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_ray_data_scores_match_predict(multimodal_run, tmp_path):
    import ray

    data = multimodal_run.parent / "data" / "train.jsonl"  # text + image rows
    lines = data.read_text().splitlines()[:40]
    subset = tmp_path / "data" / "rows.jsonl"
    subset.parent.mkdir()
    (tmp_path / "data" / "images").symlink_to(data.parent / "images")
    subset.write_text("\n".join(lines) + "\n")
    assert main(["predict", "--run", str(multimodal_run), "--data", str(subset), "--out", str(tmp_path / "p.jsonl"), "-q"]) == 0
    try:
        assert main(["score", "--run", str(multimodal_run), "--data", str(subset), "--out", str(tmp_path / "b.jsonl"),
                     "--batch-size", "16", "--num-cpus", "2"]) == 0
    finally:
        ray.shutdown()
    predicted = [json.loads(x) for x in (tmp_path / "p.jsonl").read_text().splitlines()]
    bulk = [json.loads(x) for x in (tmp_path / "b.jsonl").read_text().splitlines()]
    assert [r["id"] for r in bulk] == [r["id"] for r in predicted]  # same rows, same order
    for a, b in zip(predicted, bulk):
        assert b["image_scores"] is not None
        for key in ("scores", "text_scores", "image_scores"):
            assert b[key] == pytest.approx(a[key], abs=1e-4)
