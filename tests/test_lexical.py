"""The lexical view: hashed n-gram regressions fitted with masked labels, stored without words, blended into the
text logits by the one scoring path (training's validation, the run's predictions and `Moderator` agree)."""

import json

import numpy as np
import pytest
import torch
import yaml

from moderation.config import ConfigError, config_from_dict
from moderation.lexical import LexicalModel
from tests.synthetic import CATEGORIES, MARKERS, tiny_config, write_dataset

TEXTS = ["the cat sat on the mat", "badword and more badword", "a quiet walk in the park", "you badword person",
         "lunch was nice today", "badword badword badword", "see you at the station", "such a badword thing"] * 5


def labels_of(texts):
    return np.array([[float("badword" in t), 0.0] for t in texts], np.float32)


def test_fits_known_labels_only_and_scores_the_words_it_learnt():
    labels = labels_of(TEXTS)
    mask = np.ones_like(labels, bool)
    mask[::3, 0] = False  # a third of the rows unknown for class 0
    mask[:, 1] = False
    model = LexicalModel(normalize=False).fit(TEXTS, labels, mask, np.array([True, True]))
    logits = model.logits(["what a badword", "the park was quiet"])
    assert logits[0, 0] > 0 > logits[1, 0]
    assert not model.active[1] and np.all(logits[:, 1] == 0)  # no known label: not fitted, logit 0


def test_source_intercepts_take_a_source_s_base_rate_off_its_style_words():
    # Source "forum" writes "greetings" in every post and is 70% badword; source "chat" writes "hey" and is 10%.
    # Within each, only "badword" decides the label. A pooled regression also learns "greetings" as a harm word.
    rng = np.random.default_rng(0)
    texts, sources = [], []
    for source, opener, rate in (("forum", "greetings", 0.7), ("chat", "hey", 0.1)):
        for i in range(200):
            word = "badword" if rng.random() < rate else "lunch"
            texts.append(f"{opener} {word} {['today', 'again', 'now', 'here'][i % 4]}")
            sources.append(source)
    labels = labels_of(texts)
    mask = np.ones_like(labels, bool)
    mask[:, 1] = False
    classes = np.array([True, False])
    style_gap = {}
    for kind in ("pooled", "intercepts"):
        model = LexicalModel(normalize=False, min_df=1).fit(texts, labels, mask, classes, sources,
                                                            source_intercepts=kind == "intercepts")
        greetings, hey = model.logits(["greetings today", "hey today"])[:, 0]
        style_gap[kind] = greetings - hey
        bad, good = model.logits(["hey badword now", "greetings lunch now"])[:, 0]
        assert bad > 0 > good  # the content word still decides
    assert style_gap["pooled"] > 0.5
    assert abs(style_gap["intercepts"]) < style_gap["pooled"] / 3
    assert model.weights.shape[1] == sum(len(b) for b in model.buckets.values())  # the intercepts were dropped


def test_saved_file_round_trips_exactly_and_holds_no_words(tmp_path):
    labels = labels_of(TEXTS)
    model = LexicalModel(normalize=False).fit(TEXTS, labels, np.ones_like(labels, bool), np.array([True, False]))
    model.save(tmp_path / "lexical.safetensors")
    loaded = LexicalModel.load(tmp_path / "lexical.safetensors")
    probe = ["badword here", "a walk", ""]
    assert np.array_equal(loaded.logits(probe), model.logits(probe))
    raw = (tmp_path / "lexical.safetensors").read_bytes()
    assert b"badword" not in raw and b"station" not in raw  # buckets are integers, not n-grams


def test_normaliser_lets_rewritten_words_meet_what_was_learnt():
    labels = labels_of(TEXTS)
    mask = np.ones_like(labels, bool)
    plain = LexicalModel(normalize=False).fit(TEXTS, labels, mask, np.array([True, False]))
    normalised = LexicalModel(normalize=True).fit(TEXTS, labels, mask, np.array([True, False]))
    rewritten = ["b4dw0rd"]
    assert normalised.logits(rewritten)[0, 0] > plain.logits(rewritten)[0, 0]


def test_load_names_a_missing_or_foreign_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="lexical.safetensors"):
        LexicalModel.load(tmp_path / "lexical.safetensors")


def test_config_refuses_a_blend_a_trained_image_branch_would_mix(tiny_bert, tmp_path):
    base = tiny_config(tmp_path / "d.jsonl", tiny_bert, tmp_path / "run", lexical={"weight": 0.5},
                       image_encoder={"kind": "opennsfw"})
    with pytest.raises((ConfigError, ValueError), match="lexical.weight"):
        config_from_dict(base)
    ok = tiny_config(tmp_path / "d.jsonl", tiny_bert, tmp_path / "run", lexical={"weight": 0.5},
                     image_encoder={"kind": "opennsfw"}, head={"image_branch": "text_head"})
    assert config_from_dict(ok).lexical.weight == 0.5


def test_recipe_without_the_lexical_view_is_unchanged(tiny_bert, tmp_path):
    """Off (weight 0), the recipe has no lexical section: runs and cross-source results of earlier recipes
    still match their configs."""
    off = config_from_dict(tiny_config(tmp_path / "d.jsonl", tiny_bert, tmp_path / "run"))
    on = config_from_dict(tiny_config(tmp_path / "d.jsonl", tiny_bert, tmp_path / "run", lexical={"weight": 0.5}))
    assert "lexical" not in off.recipe() and on.recipe()["lexical"]["weight"] == 0.5


@pytest.fixture(scope="module")
def lexical_run(tiny_bert, tmp_path_factory):
    from moderation.cli import main

    tmp = tmp_path_factory.mktemp("lexical")
    data = write_dataset(tmp / "d.jsonl", n=300, seed=5)
    tree = tiny_config(data, tiny_bert, tmp / "run", train={"epochs": 4}, lexical={"weight": 0.5})
    (tmp / "config.yaml").write_text(yaml.safe_dump(tree))
    assert main(["train", str(tmp / "config.yaml"), "-q"]) == 0
    return tmp / "run"


def test_run_blends_half_and_half_and_serving_scores_what_training_predicted(lexical_run):
    from moderation import runfiles
    from moderation.moderator import Moderator

    assert (lexical_run / runfiles.LEXICAL).is_file()
    moderator = Moderator(lexical_run)
    assert moderator.meta["lexical"] and moderator.lexical_model is not None
    zero_shot = set(moderator.meta["zero_shot"])
    trained = [i for i, c in enumerate(CATEGORIES) if c not in zero_shot]
    assert trained and torch.equal(moderator.model.lexical_weight[trained], torch.full((len(trained),), 0.5))
    assert not moderator.model.lexical_weight[[i for i in range(len(CATEGORIES)) if i not in trained]].any()

    texts = [f"a post with {MARKERS['violence']} in it", "a calm post about gardening"]
    blended = moderator.score_arrays(texts).fused
    head_only_model = moderator.model
    features = moderator.featurize([{"text": t} for t in texts])
    lexical = moderator.lexical_model.logits(texts)
    from moderation.scoring import run_model

    saved = head_only_model.lexical_weight.clone()
    head_only_model.lexical_weight.zero_()
    try:
        head = run_model(head_only_model, features).fused
    finally:
        head_only_model.lexical_weight.copy_(saved)
    logit = lambda p: np.log(p / (1 - p))
    expected = 0.5 * logit(head[:, trained].astype(np.float64)) + 0.5 * lexical[:, trained]
    assert np.allclose(logit(blended[:, trained].astype(np.float64)), expected, atol=1e-4)

    # The run's stored test predictions are the scores serving gives the same posts.
    preds = runfiles.read_predictions(lexical_run).splits["test"]
    text_of = {r["id"]: r["text"] for r in map(json.loads, (lexical_run.parent / "d.jsonl").read_text().splitlines())}
    ids = [i for i in preds.ids if i in text_of][:8]
    assert len(ids) == 8
    served = moderator.score_arrays([text_of[i] for i in ids]).fused
    stored = {i: preds.fused[k] for k, i in enumerate(preds.ids)}
    assert np.allclose(served, [stored[i] for i in ids], atol=1e-5)


def test_model_without_its_lexical_logits_refuses_to_score(lexical_run):
    from moderation.features import featurize
    from moderation.moderator import Moderator
    from moderation.scoring import run_model

    moderator = Moderator(lexical_run)
    features = featurize({"text": ["hello there"], "image": [None]}, len(CATEGORIES), moderator.text_encoder, None)
    with pytest.raises(ValueError, match="lexical view"):
        run_model(moderator.model, features)


def test_min_sources_keeps_only_n_grams_several_sources_use(tmp_path):
    """A word only one source writes (its topic, its idiom) is no feature with min_sources=2, however well it
    separates that source's labels; a word two sources write stays and still decides. Saved and loaded alike."""
    texts, sources = [], []
    for source, topic in (("forum", "zorbleflax"), ("tweets", "quuxington")):
        for i in range(40):
            harmful = i % 2 == 0
            texts.append(f"{'badword' if harmful else 'lunch'} {topic if harmful else 'today'} number {i % 5}")
            sources.append(source)
    labels = np.array([[1.0] if t.startswith("badword") else [0.0] for t in texts], np.float32)
    mask, classes = np.ones_like(labels, bool), np.array([True])
    pooled = LexicalModel(normalize=False, min_df=1).fit(texts, labels, mask, classes, sources)
    shared = LexicalModel(normalize=False, min_df=1, min_sources=2).fit(texts, labels, mask, classes, sources)
    word = LexicalModel._hashers()["word"].transform(["zorbleflax"]).indices[0]
    assert word in pooled.buckets["word"] and word not in shared.buckets["word"]
    assert "number" in texts[0] and LexicalModel._hashers()["word"].transform(["number"]).indices[0] in shared.buckets["word"]
    # Learnt as harm from one source's topic word; with min_sources=2 only character n-grams other words share remain.
    assert pooled.logits(["zorbleflax"])[0, 0] > 0.5
    assert shared.logits(["zorbleflax"])[0, 0] < pooled.logits(["zorbleflax"])[0, 0] / 2
    bad, good = shared.logits(["badword number", "lunch number"])[:, 0]
    assert bad > 0 > good
    shared.save(tmp_path / "lexical.safetensors")
    assert LexicalModel.load(tmp_path / "lexical.safetensors").min_sources == 2
    with pytest.raises(ValueError, match="min_sources=2 needs"):
        LexicalModel(normalize=False, min_df=1, min_sources=2).fit(texts, labels, mask, classes)
