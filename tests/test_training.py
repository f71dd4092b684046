"""moderation.training.train_run owns the run directory: staged, complete, evaluated before it appears, and
never replacing a run (least of all the shipped model) or a user's own files without overwrite."""

from __future__ import annotations

import numpy as np
import pytest

from moderation import runfiles
from moderation.config import config_from_dict
from moderation.training import train_run
from tests.synthetic import CATEGORIES, tiny_config, write_dataset
from tests.test_train import mean_ap

TRAINED_FILES = {"config.yaml", "model.json", "head.safetensors", "reference_scores.npz", "predictions.npz",
                 "train_log.jsonl"}


@pytest.fixture(scope="module")
def config(tiny_bert, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("training")
    data = write_dataset(tmp / "d.jsonl", n=150, seed=6)
    return config_from_dict(tiny_config(data, tiny_bert, tmp / "unused", train={"epochs": 3}))


def train(config, out, **kwargs):
    return train_run(config, compute_metrics=mean_ap, out_dir=out, progress=False, **kwargs)


@pytest.fixture(scope="module")
def run(config, tmp_path_factory):
    seen = {}

    def evaluate(stage):
        seen["stage"], seen["files"] = stage, {p.name for p in stage.iterdir()}

    out = train(config, tmp_path_factory.mktemp("runs") / "run", evaluate=evaluate, version="tiny-1")
    return out, seen


def test_evaluation_runs_on_the_complete_stage_before_the_run_appears(run):
    out, seen = run
    assert seen["stage"] != out and seen["stage"].parent == out.parent and not seen["stage"].exists()
    assert seen["files"] == TRAINED_FILES
    assert {p.name for p in out.iterdir()} == TRAINED_FILES
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no staging folder left behind
    assert runfiles.read_config(out).run.output_dir == str(out)


def test_predictions_hold_both_held_out_splits_with_labels(run, config):
    out, _ = run
    predictions = runfiles.read_predictions(out)
    assert predictions.categories == CATEGORIES and predictions.model_version == "tiny-1"
    assert set(predictions.splits) == {"validation", "test"}
    rows = runfiles.read_json(out / runfiles.MODEL)["rows"]
    for name, p in predictions.splits.items():
        assert len(p) == rows[name] and p.fused.shape == p.labels.shape == (rows[name], len(CATEGORIES))
        assert p.label_mask.dtype == bool and not p.label_mask[:, CATEGORIES.index("self_harm")].any()
        assert ((p.fused >= 0) & (p.fused <= 1)).all() and p.has_text.all() and not p.has_image.any()
        assert set(p.source.tolist()) == {"synthetic"} and len(set(p.ids.tolist())) == len(p)
    _, reference = runfiles.read_reference_scores(out)
    assert np.allclose(reference, predictions.splits["validation"].fused)


def test_a_failed_run_leaves_nothing_behind(config, tmp_path):
    def broken(stage):
        raise RuntimeError("evaluation failed")

    with pytest.raises(RuntimeError, match="evaluation failed"):
        train(config, tmp_path / "run", evaluate=broken)
    assert list(tmp_path.iterdir()) == []


def test_an_existing_run_is_refused_without_overwrite(config, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "model.json").write_text("{}")
    with pytest.raises(runfiles.RunExists, match=r"already exists; pass --overwrite"):
        train(config, out)
    assert [p.name for p in out.iterdir()] == ["model.json"] and (out / "model.json").read_text() == "{}"


@pytest.mark.parametrize("how", ["out_dir", "config"])
def test_the_shipped_model_is_refused_before_anything_runs(config, how):
    before = sorted((p.name, p.stat().st_mtime_ns) for p in runfiles.DEFAULT_MODEL_DIR.iterdir())
    target = config.model_copy(deep=True)
    target.run.output_dir = str(runfiles.DEFAULT_MODEL_DIR)
    with pytest.raises(runfiles.RunExists, match="shipped default model"):
        if how == "out_dir":
            train(config, runfiles.DEFAULT_MODEL_DIR)
        else:
            train_run(target, compute_metrics=mean_ap, progress=False)
    assert sorted((p.name, p.stat().st_mtime_ns) for p in runfiles.DEFAULT_MODEL_DIR.iterdir()) == before
    assert not [p for p in runfiles.DEFAULT_MODEL_DIR.parent.iterdir() if p.name.startswith(".default_model")]


def test_overwrite_replaces_only_the_run_files_and_keeps_the_users(config, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.md").write_text("mine")
    (out / "audit-test").mkdir()
    (out / "audit-test" / "audit.md").write_text("mine too")
    (out / runfiles.TEXT_ENCODER).mkdir()  # a stale fine-tuned encoder would be loaded by serving: it must go
    (out / runfiles.TEXT_ENCODER / "config.json").write_text("{}")
    (out / "model.json").write_text('{"version": "old"}')
    train(config, out, overwrite=True, version="new")
    assert (out / "notes.md").read_text() == "mine" and (out / "audit-test" / "audit.md").read_text() == "mine too"
    assert not (out / runfiles.TEXT_ENCODER).exists()
    assert runfiles.read_json(out / "model.json")["version"] == "new"
    assert {p.name for p in out.iterdir()} == TRAINED_FILES | {"notes.md", "audit-test"}
    assert [p.name for p in tmp_path.iterdir()] == ["run"]


def test_a_lora_run_keeps_only_its_adapter_and_scores_as_it_was_trained(tiny_bert, tmp_path):
    """The base weights are the package's, not ours to ship: a LoRA run holds the adapter alone, and loading
    it (base + adapter, merged) reproduces the scores training recorded for its test split."""
    from eval.evaluate import evaluate_run
    from moderation import Moderator
    from moderation.data.build import build_splits
    from moderation.encoders.text import TextEncoder
    from safetensors.torch import load_file

    data = write_dataset(tmp_path / "d.jsonl", n=150, seed=6)
    config = config_from_dict(tiny_config(data, tiny_bert, tmp_path / "unused", train={"epochs": 2, "batch_size": 64},
                                          text_encoder={"finetune": "lora", "lora_r": 2}))
    out = train(config, tmp_path / "run", version="tiny-lora")
    evaluate_run(out, progress=False, baseline=False)
    kept = {p.name for p in (out / runfiles.TEXT_ENCODER).iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors"} <= kept
    assert not kept & {"model.safetensors", "pytorch_model.bin", "config.json", "tokenizer.json"}
    recorded = runfiles.read_predictions(out).splits["test"]
    texts = build_splits(runfiles.read_config(out))["test"]["text"]
    moderator = Moderator(out)
    assert moderator.text_encoder.adapter  # the adapter was applied, not the bare base model
    served = moderator.predict_proba(list(texts))
    assert np.allclose(served, recorded.fused, atol=1e-4)
    # LoRA starts as a no-op (B = 0): trained B matrices show the adapter learned something to apply.
    adapter = load_file(out / runfiles.TEXT_ENCODER / "adapter_model.safetensors")
    assert any("lora_B" in k and v.abs().sum() > 0 for k, v in adapter.items())
    # The embedding cache must never serve the bare base model's embeddings for this encoder.
    assert TextEncoder(config.text_encoder).identity != moderator.text_encoder.identity


def test_an_adapted_run_trains_the_frozen_recipe_on_its_adapted_encoder_and_keeps_only_the_adapter(tiny_bert, tmp_path):
    """text_encoder.adapt: LoRA first (its epochs marked in the train log), then several heads and the lexical view
    on embeddings of the merged encoder, cached under that encoder's own key; the run holds the adapter alone and
    loading it reproduces the scores training recorded."""
    import json

    from eval.evaluate import evaluate_run
    from moderation import Moderator
    from moderation.data.build import build_splits
    from moderation.encoders.cache import cached_text_windows
    from moderation.encoders.text import TextEncoder
    from safetensors.torch import load_file

    data = write_dataset(tmp_path / "d.jsonl", n=300, seed=6)
    config = config_from_dict(tiny_config(data, tiny_bert, tmp_path / "unused", train={"epochs": 3},
                                          text_encoder={"lora_r": 2, "adapt": {"rows_per_source": 200, "epochs": 2,
                                                                               "batch_size": 64}},
                                          head={"members": 2}, lexical={"weight": 0.5}))
    out = train(config, tmp_path / "run", version="tiny-adapt")
    evaluate_run(out, progress=False, baseline=False)
    kept = {p.name for p in (out / runfiles.TEXT_ENCODER).iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors"} <= kept
    assert not kept & {"model.safetensors", "pytorch_model.bin", "config.json", "tokenizer.json"}
    adapter = load_file(out / runfiles.TEXT_ENCODER / "adapter_model.safetensors")
    assert any("lora_B" in k and v.abs().sum() > 0 for k, v in adapter.items())

    epochs = [json.loads(line) for line in (out / runfiles.TRAIN_LOG).read_text().splitlines()]
    adapting = [e for e in epochs if e.get("encoder") == "lora"]
    assert 1 <= len(adapting) <= 2 and "member" not in adapting[0]  # the adaptation stage: one head, its epochs
    assert {e["member"] for e in epochs if "encoder" not in e} == {0, 1}  # then the frozen recipe's two heads
    assert (out / runfiles.LEXICAL).exists()
    card = (out / runfiles.MODEL_CARD).read_text()
    assert "LoRA-adapted (r=2) on at most 200 rows per training set, 2 epochs, then frozen" in card

    moderator = Moderator(out)
    assert moderator.text_encoder.adapter
    assert TextEncoder(config.text_encoder).identity != moderator.text_encoder.identity
    # The heads trained on the adapted encoder's embeddings, cached under its key: encoding with the run's encoder
    # finds that one store, the bare base model needs a store of its own.
    cache = tmp_path / "cache"

    def stores():
        return sorted(p.name for p in cache.iterdir())

    trained_on = stores()
    assert len(trained_on) == 1
    cached_text_windows(moderator.text_encoder, ["hello cats"], cache, progress=False)
    assert stores() == trained_on
    cached_text_windows(TextEncoder(config.text_encoder), ["hello cats"], cache, progress=False)
    assert len(stores()) == 2
    recorded = runfiles.read_predictions(out).splits["test"]
    texts = build_splits(runfiles.read_config(out))["test"]["text"]
    assert np.allclose(moderator.predict_proba(list(texts)), recorded.fused, atol=1e-4)
