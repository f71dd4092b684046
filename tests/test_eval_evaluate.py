"""eval.evaluate: a run directory as `moderation train` writes it (train_run + evaluate_run), re-evaluated,
its predictions rewritten for an older run, and a file evaluated into the working directory."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from eval.evaluate import evaluate_file, evaluate_run, train_and_evaluate, write_predictions
from moderation import runfiles
from moderation.config import config_from_dict
from moderation.policy import Scoring
from tests.synthetic import tiny_config, write_dataset


@pytest.fixture(scope="module")
def run(tiny_bert, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("evaluate")
    # Half the posts harmful: enough toxicity positives in validation for a block threshold that blocks five.
    data = write_dataset(tmp / "data" / "posts.jsonl", n=400, seed=3, positive_rate=0.5)
    config = config_from_dict(tiny_config(data, tiny_bert, tmp / "run", train={"epochs": 12}))
    return train_and_evaluate(config, progress=False, version="tiny-eval")


def test_the_run_has_thresholds_report_and_card(run):
    # Written later by other commands: cross_source/ (evaluate --thresholds-from), evasion.json (bench evasion),
    # harmless.json (bench harmless); lexical.safetensors only by a recipe with a lexical view.
    assert {p.name for p in run.iterdir()} == set(runfiles.RUN_OUTPUTS) - {runfiles.TEXT_ENCODER, runfiles.CROSS_SOURCE,
                                                                          runfiles.EVASION, runfiles.HARMLESS,
                                                                          runfiles.LEXICAL}
    thresholds = runfiles.read_thresholds(run)
    assert thresholds["self_harm"].scoring == Scoring.ZERO_SHOT and not thresholds["self_harm"].may_block
    assert thresholds["toxicity"].scoring == Scoring.TRAINED and thresholds["toxicity"].may_block
    report = json.loads((run / "report" / "report.json").read_text())
    assert set(report["results"]) == {"validation", "test"}
    assert set(report["results"]["test"]) == {"model", "tfidf_baseline"}
    assert report["mean_average_precision"]["test"]["model"] > 0.8  # marker words are easy
    assert report["thresholds"]["self_harm"]["may_block"] is False
    card = (run / runfiles.MODEL_CARD).read_text()
    never = card.split("## Classes that never block")[1].split("##")[0]
    for name, why in thresholds.never_block().items():
        assert f"- {name}: {why}" in never
    assert "self_harm: scored zero-shot" in never
    assert "text read as written" in card.split("\n")[2]  # the tiny recipe neither strips markup nor normalises
    assert "blocks? |" in (run / "report" / "report.md").read_text()


def test_predictions_equal_what_the_moderator_scores(run):
    """Training's scores and the serving path's scores of the same test posts agree: one scoring path."""
    from moderation.data.build import build_splits
    from moderation.moderator import Moderator

    test = build_splits(runfiles.read_config(run), only_eval=True)["test"]
    predictions = runfiles.read_predictions(run).splits["test"]
    assert list(test["id"]) == predictions.ids.tolist()
    served = Moderator(run).score_arrays(list(test["text"]))
    np.testing.assert_allclose(served.fused, predictions.fused, atol=1e-5)


def test_evaluate_run_is_rerunnable_and_write_predictions_rebuilds_an_old_run(run, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(run, old)
    for name in (runfiles.PREDICTIONS, runfiles.MODEL_CARD, runfiles.REPORT):  # a run from before the file
        path = old / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    with pytest.raises(FileNotFoundError, match="write_predictions"):
        evaluate_run(old)
    write_predictions(old, progress=False)
    before, after = runfiles.read_predictions(run), runfiles.read_predictions(old)
    assert after.model_version == "tiny-eval"
    for split in ("validation", "test"):
        np.testing.assert_allclose(after.splits[split].fused, before.splits[split].fused, atol=1e-5)
        assert np.array_equal(after.splits[split].label_mask, before.splits[split].label_mask)
    evaluate_run(old, progress=False, baseline=False)
    assert runfiles.read_thresholds(old).never_block() == runfiles.read_thresholds(run).never_block()
    report = json.loads((old / "report" / "report.json").read_text())
    assert set(report["results"]["test"]) == {"model"} and (old / runfiles.MODEL_CARD).is_file()


def test_evaluate_file_writes_under_the_working_directory(run, tmp_path, monkeypatch):
    data = write_dataset(tmp_path / "posts.jsonl", n=40, seed=9)
    monkeypatch.chdir(tmp_path)
    out = evaluate_file(run, data, progress=False)
    assert out == tmp_path / "eval-posts" and (out / "report.md").is_file()
    assert not [p for p in run.iterdir() if p.name.startswith("eval-")]
    report = json.loads((out / "report.json").read_text())
    assert report["meta"]["rows"] == {"evaluated": 40} and report["results"]["posts.jsonl"]["model"]["toxicity"]["support"] == 40
