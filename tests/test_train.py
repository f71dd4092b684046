"""Training on synthetic posts with a tiny local text model: it learns, respects masks, and zero-shot kicks in."""

import numpy as np
import pytest

from moderation.config import config_from_dict
from moderation.scoring import run_model
from moderation.train import train
from tests.synthetic import CATEGORIES, tiny_config, write_dataset


def mean_ap(labels, mask, scores):
    from sklearn.metrics import average_precision_score

    aps = [average_precision_score(labels[mask[:, c], c], scores[mask[:, c], c])
           for c in range(labels.shape[1]) if mask[:, c].any() and 0 < labels[mask[:, c], c].sum() < mask[:, c].sum()]
    return float(np.mean(aps)) if aps else 0.0


@pytest.fixture(scope="module")
def trained(tiny_bert, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("train")
    data = write_dataset(tmp / "d.jsonl", n=400, seed=3)
    config = config_from_dict(tiny_config(data, tiny_bert, tmp / "run"))
    return config, train(config, mean_ap, progress=False)


def test_head_learns_marker_words(trained):
    config, result = trained
    test = result.features["test"]
    scores = run_model(result.model, test).fused
    assert mean_ap(test.labels, test.label_mask, scores) > 0.8  # markers are easy; chance is ~0.1
    assert result.history and result.history[-1]["epoch"] <= config.train.epochs


def test_unlabelled_category_is_zero_shot_and_scored(trained):
    config, result = trained
    assert set(result.zero_shot_classes) == {"self_harm"}  # never labelled in the synthetic data
    assert result.zero_shot_classes["self_harm"] == "corpus_quantile"
    scores = run_model(result.model, result.features["test"]).fused[:, CATEGORIES.index("self_harm")]
    assert np.isfinite(scores).all() and 0 < scores.mean() < 0.5


def test_cache_makes_second_featurisation_identical(trained, tmp_path):
    from moderation.encoders.cache import cached_text_windows

    config, result = trained
    texts = ["hello cats", "dogs park"]
    first = cached_text_windows(result.text_encoder, texts, tmp_path, progress=False)
    assert len(list(tmp_path.rglob("*.safetensors"))) == 1
    second = cached_text_windows(result.text_encoder, texts, tmp_path, progress=False)
    assert np.array_equal(first[0], second[0]) and np.array_equal(first[1], second[1])


def test_the_cache_embeds_only_texts_it_has_not_seen_in_any_grouping(trained, tmp_path):
    """A cross-source fold or a retrain regroups the same texts: only new ones reach the encoder, and the
    windows come back exactly as encoding the list directly gives them (duplicates and empty text included)."""
    from moderation.encoders.cache import cached_text_windows

    _, result = trained
    encoder, seen = result.text_encoder, []
    real_encode = encoder.encode

    def counting_encode(texts, **kw):
        seen.append(list(texts))
        return real_encode(texts, **kw)

    encoder.encode = counting_encode
    try:
        cached_text_windows(encoder, ["cats park", "dogs " * 30, ""], tmp_path, progress=False)
        texts = ["weather", "dogs " * 30, "weather", "cats park", "", "music"]
        windows, owner = cached_text_windows(encoder, texts, tmp_path, progress=False)
    finally:
        encoder.encode = real_encode
    assert seen[1] == ["weather", "music"]  # the rest came from the first call's shard
    direct_windows, direct_owner = encoder.encode(texts)
    assert np.array_equal(owner, direct_owner) and np.allclose(windows, direct_windows, atol=1e-6)
    assert len(list(tmp_path.rglob("*.safetensors"))) == 2


@pytest.mark.parametrize("overrides", [
    {"loss": {"kind": "focal"}},
    {"loss": {"balance": "per_source"}},
    {"text_encoder": {"pooling": "mean_middle_and_last"}},
    {"text_encoder": {"pooling": "mean_all_layers"}},
    {"sampling": {"negative_rate": 0.5}},
    {"text_encoder": {"finetune": "lora", "lora_r": 2}, "train": {"epochs": 2, "batch_size": 64}},
    {"text_encoder": {"finetune": "full"}, "train": {"epochs": 2, "batch_size": 64}},
])
def test_variants_train(tiny_bert, tmp_path, overrides):
    data = write_dataset(tmp_path / "d.jsonl", n=200, seed=4)
    config = config_from_dict(tiny_config(data, tiny_bert, tmp_path / "run", **overrides))
    result = train(config, mean_ap, progress=False)
    scores = run_model(result.model, result.features["validation"]).fused
    assert scores.shape == (len(result.features["validation"]), len(CATEGORIES))
    if config.sampling.negative_rate < 1:
        trained_classes = [i for i, c in enumerate(CATEGORIES) if c not in result.zero_shot_classes]
        assert np.allclose(result.model.prior_offset[trained_classes].numpy(), np.log(0.5))


def test_source_intercepts_train_beside_both_views_and_leave_scoring_alone(tiny_bert, tmp_path):
    # Two sources at different base rates; the intercepts exist in training only, so the model a run saves is the
    # same kind of model and scores validation posts by what they say.
    busy = write_dataset(tmp_path / "busy.jsonl", n=200, seed=4, positive_rate=0.6)
    quiet = write_dataset(tmp_path / "quiet.jsonl", n=200, seed=5, positive_rate=0.1)
    tree = tiny_config(busy, tiny_bert, tmp_path / "run", loss={"source_intercepts": True}, lexical={"weight": 0.5},
                       train={"epochs": 5})
    tree["datasets"]["quiet"] = {"loader": "jsonl", "path": str(quiet)}
    result = train(config_from_dict(tree), mean_ap, progress=False)
    assert set(result.splits["train"]["source"]) == {"synthetic", "quiet"}
    assert not any(name.startswith("intercept") or "offsets" in name for name in result.model.state_dict())
    lexical = result.lexical
    assert lexical.weights.shape[1] == sum(len(b) for b in lexical.buckets.values())
    scores = run_model(result.model, result.features["validation"]).fused
    labels, known = result.features["validation"].labels, result.features["validation"].label_mask
    assert mean_ap(labels, known & ~np.isin(CATEGORIES, list(result.zero_shot_classes)), scores) > 0.5


def test_open_nsfw_scores_sexual_images_when_image_positives_are_few(tiny_bert, tmp_path):
    data = write_dataset(tmp_path / "d.jsonl", n=120, seed=8, images=True)
    config = config_from_dict(tiny_config(data, tiny_bert, tmp_path / "run", image_encoder={"kind": "opennsfw"},
                                          train={"epochs": 3}, zero_shot={"min_train_positives": 30}))
    result = train(config, mean_ap, progress=False)
    sexual = CATEGORIES.index("sexual")
    assert result.model.nsfw_class == sexual
    assert result.zero_shot_classes["sexual (images)"] == "open_nsfw probability"
    test = result.features["test"]
    scores = run_model(result.model, test)
    with_image = test.has_image
    assert np.allclose(scores.image[with_image, sexual], test.extras["nsfw"][with_image], atol=1e-4)
    assert (scores.fused[with_image, sexual] >= scores.image[with_image, sexual] - 1e-6).all()


def test_training_is_reproducible(tiny_bert, tmp_path):
    data = write_dataset(tmp_path / "d.jsonl", n=150, seed=6)
    config = config_from_dict(tiny_config(data, tiny_bert, tmp_path / "run", train={"epochs": 3}))
    first, second = (train(config, mean_ap, progress=False).model.state_dict() for _ in range(2))
    assert all(np.array_equal(first[k].numpy(), second[k].numpy()) for k in first)


def test_evasion_augmentation_adds_rewritten_copies_to_training_only(tiny_bert, tmp_path):
    from moderation.data.build import build_splits
    from moderation.train import with_evasion_copies

    data = write_dataset(tmp_path / "d.jsonl", n=200, seed=4)
    config = config_from_dict(tiny_config(data, tiny_bert, tmp_path / "run", train={"epochs": 2,
                                          "evasion_augment": 0.5, "evasion_augment_kind": "wild"}))
    plain = build_splits(config)["train"]
    augmented = with_evasion_copies(plain, 0.5, "wild", seed=0)
    copies = augmented.select(range(len(plain), len(augmented)))
    assert 0.3 * len(plain) < len(copies) < 0.7 * len(plain)
    originals = {r["id"]: r for r in plain}
    for copy in copies:
        original = originals[copy["id"].removesuffix("~wild")]
        assert copy["text"] != original["text"] and copy["labels"] == original["labels"]
        assert copy["label_mask"] == original["label_mask"] and copy["split"] == "train"
    assert with_evasion_copies(plain, 0.5, "wild", seed=0)["text"] == augmented["text"]  # seeded
    result = train(config, mean_ap, progress=False)
    assert len(result.splits["train"]) == len(augmented)
    assert len(result.splits["validation"]) == len(build_splits(config)["validation"])  # scored as written


def test_fine_tuning_batches_are_length_bucketed_within_the_token_budget():
    from moderation.train import bucketed_batches

    rng = np.random.default_rng(0)
    lengths = [[int(n)] * int(w) for n, w in zip(rng.integers(5, 256, 500), rng.integers(1, 4, 500))]
    batches = bucketed_batches(lengths, batch_size=32, max_tokens=2048, rng=np.random.default_rng(1))
    seen = np.concatenate(batches)
    assert sorted(seen.tolist()) == list(range(500))  # every text once per epoch
    for b in batches:
        windows, width = sum(len(lengths[i]) for i in b), max(max(lengths[i]) for i in b)
        assert len(b) <= 32 and (windows * width <= 2048 or len(b) == 1)
    # Bucketing: far fewer padded tokens than batches of 32 in random order.
    padded = lambda bs: sum(sum(len(lengths[i]) for i in b) * max(max(lengths[i]) for i in b) for b in bs)
    shuffled = np.random.default_rng(2).permutation(500)
    assert padded(batches) < 0.7 * padded([shuffled[i:i + 32] for i in range(0, 500, 32)])
    again = bucketed_batches(lengths, batch_size=32, max_tokens=2048, rng=np.random.default_rng(1))
    assert all(np.array_equal(a, b) for a, b in zip(batches, again))  # seeded


def test_head_members_train_apart_and_score_as_the_mean_of_their_logits(tiny_bert, tmp_path):
    """`head.members: 3`: the first head is exactly the one-head model of the same seed, the others start from
    other seeds, the model scores the mean of their logits, and a saved run loads back with all three."""
    import torch

    from moderation.fusion import HeadEnsemble
    from moderation.model import ModerationModel

    data = write_dataset(tmp_path / "d.jsonl", n=150, seed=6)
    one = train(config_from_dict(tiny_config(data, tiny_bert, tmp_path / "one", train={"epochs": 3})), mean_ap,
                progress=False)
    three = train(config_from_dict(tiny_config(data, tiny_bert, tmp_path / "three", train={"epochs": 3},
                                               head={"members": 3})), mean_ap, progress=False)
    heads = three.model.head
    assert isinstance(heads, HeadEnsemble) and len(heads.members) == 3
    first = {k: v for k, v in heads.members[0].state_dict().items()}
    assert all(torch.equal(v, one.model.head.state_dict()[k]) for k, v in first.items())
    assert not torch.equal(heads.members[1].text_scorer[1].weight, heads.members[0].text_scorer[1].weight)
    assert {r["member"] for r in three.history} == {0, 1, 2}  # each head's own epochs, early-stopped apart

    test = three.features["test"]
    trained_classes = [i for i, c in enumerate(CATEGORIES) if c not in three.zero_shot_classes]
    member_logits = [logit(run_model(_alone(three.model, h), test).fused[:, trained_classes]) for h in heads.members]
    ensemble = run_model(three.model, test).fused
    assert np.allclose(logit(ensemble[:, trained_classes]), np.mean(member_logits, axis=0), atol=1e-3)

    three.model.save(tmp_path, {"version": "t"})
    loaded, meta = ModerationModel.load(tmp_path)
    assert meta["members"] == 3 and isinstance(loaded.head, HeadEnsemble)
    assert np.allclose(run_model(loaded, test).fused, ensemble, atol=1e-6)



def logit(p):
    p = np.clip(p.astype(np.float64), 1e-7, 1 - 1e-7)
    return np.log(p / (1 - p))


def _alone(model, head):
    """A copy of `model` that scores with `head` alone."""
    import copy

    single = copy.deepcopy(model)
    single.use_heads([copy.deepcopy(head)])
    return single


def test_the_adaptation_stage_tunes_one_text_head_on_capped_training_sets_only(tiny_bert, tmp_path):
    from moderation.train import adaptation_config

    data = write_dataset(tmp_path / "d.jsonl", n=50, seed=1)
    tree = tiny_config(data, tiny_bert, tmp_path / "run", head={"members": 5}, lexical={"weight": 0.5},
                       text_encoder={"adapt": {"rows_per_source": 300, "epochs": 2, "lr": 0.001}})
    tree["datasets"].update(small={"loader": "jsonl", "path": str(data), "max_samples": 100},
                            held_out={"loader": "jsonl", "path": str(data), "use": "eval_only"})
    stage = adaptation_config(config_from_dict(tree))
    assert {n: d.max_samples for n, d in stage.datasets.items()} == {"synthetic": 300, "small": 100}
    assert stage.text_encoder.finetune == "lora" and stage.text_encoder.adapt is None
    assert (stage.head.members, stage.head.fusion, stage.lexical.weight) == (1, "text_only", 0.0)
    assert (stage.train.epochs, stage.train.encoder_lr) == (2, 0.001)
