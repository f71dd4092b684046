"""Fusion heads, losses, windows and features: shapes, masks respected, missing modalities handled."""

import numpy as np
import pytest
import torch

from moderation.config import TextEncoderConfig
from moderation.features import Features, offsets_from_owner
from moderation.fusion import FusionHead, max_per_owner
from moderation.losses import (SourceIntercepts, downsample_negatives, masked_bce, masked_focal, positive_weights,
                               prior_correction, source_balanced_weights)
from moderation.model import ModerationModel
from tests.tiny_models import BERT_HIDDEN


def inputs(batch=4, windows=(1, 3, 2, 1), dt=8, di=6, has_image=(True, False, True, False)):
    owner = torch.repeat_interleave(torch.arange(batch), torch.tensor(windows))
    return dict(text_windows=torch.randn(int(sum(windows)), dt), owner=owner, image=torch.randn(batch, di),
                has_text=torch.ones(batch, dtype=torch.bool), has_image=torch.tensor(has_image))


@pytest.mark.parametrize("fusion", ["late", "concat", "text_only", "image_only"])
def test_heads_return_three_logits_of_shape_b_c(fusion):
    head = FusionHead(fusion, 8, 6, 5)
    out = head(**inputs())
    assert set(out) == {"text", "image", "fused"}
    assert all(v.shape == (4, 5) for v in out.values())
    out["fused"].sum().backward()  # differentiable end to end


def test_late_fusion_uses_the_present_modality_alone():
    head = FusionHead("late", 8, 6, 3).eval()
    batch = inputs(has_image=(False, False, True, True))
    batch["has_text"] = torch.tensor([True, True, True, False])
    out = head(**batch)
    assert torch.allclose(out["fused"][0], out["text"][0])  # text only
    assert torch.allclose(out["fused"][3], out["image"][3])  # image only


def test_window_max_pooling():
    values = torch.tensor([[1.0], [5.0], [2.0], [-1.0]])
    owner = torch.tensor([0, 0, 1, 1])
    assert max_per_owner(values, owner, 3).squeeze(1).tolist() == [5.0, 2.0, 0.0]  # owner 2 has no window


def test_masked_losses_ignore_unknown_labels():
    logit = torch.randn(5, 3)
    label = torch.randint(0, 2, (5, 3)).float()
    mask = torch.rand(5, 3) > 0.4
    flipped = torch.where(mask, label, 1 - label)  # change only the unknown labels
    assert torch.allclose(masked_bce(logit, label, mask), masked_bce(logit, flipped, mask))
    assert torch.allclose(masked_focal(logit, label, mask), masked_focal(logit, flipped, mask))
    assert masked_focal(logit, label, mask, gamma=0.0).item() == pytest.approx(masked_bce(logit, label, mask).item())


def test_positive_weights_count_known_labels_only():
    labels = np.array([[1, 0], [0, 0], [0, 1], [0, 0]], np.float32)
    mask = np.array([[1, 1], [1, 0], [1, 1], [1, 0]], bool)
    assert positive_weights(labels, mask, cap=100).tolist() == [3.0, 1.0]  # class 1: one pos, one known neg
    assert positive_weights(labels, mask, cap=2).tolist() == [2.0, 1.0]


def test_source_balanced_weights_give_each_source_and_each_side_of_it_the_same_weight():
    rng = np.random.default_rng(0)
    # Source "a": 900 rows, 80% positive; "b": 100 rows, 10% positive; class 1 known in "a" only.
    sources = np.array(["a"] * 900 + ["b"] * 100)
    labels = np.stack([np.r_[rng.random(900) < 0.8, rng.random(100) < 0.1],
                       rng.random(1000) < 0.3], axis=1).astype(np.float32)
    mask = np.ones_like(labels, bool)
    mask[900:, 1] = False
    w = source_balanced_weights(labels, mask, sources, cap=100)
    assert (w[~mask] == 0).all()
    for c in range(2):
        assert w[mask[:, c], c].mean() == pytest.approx(1.0)  # the loss keeps its scale
    total = {(s, v): w[(sources == s) & (labels[:, 0] == v), 0].sum() for s in "ab" for v in (0, 1)}
    assert len({round(float(t), 3) for t in total.values()}) == 1  # 4 groups, a quarter of the weight each
    assert w[mask[:, 1], 1][labels[mask[:, 1], 1] == 1].sum() == pytest.approx(w[mask[:, 1], 1].sum() / 2)
    assert source_balanced_weights(labels, mask, sources, cap=2).max() == 2.0


def test_source_intercepts_learn_base_rates_the_head_then_need_not():
    # One feature tells the sources apart, the other decides the label within each. Source "a" is 80% positive,
    # "b" 10%. (A source with one label value gets no intercept: the doctest of SourceIntercepts.)
    rng = np.random.default_rng(0)
    sources = np.array(["a"] * 400 + ["b"] * 400)
    labels = (rng.random(800) < np.r_[np.full(400, 0.8), np.full(400, 0.1)]).astype(np.float32)[:, None]
    x = torch.tensor(np.stack([np.where(sources == "a", 1.0, -1.0), labels[:, 0] * 2 - 1 + rng.normal(0, 0.5, 800)],
                              axis=1), dtype=torch.float32)
    mask = torch.ones(800, 1, dtype=torch.bool)
    weights = {}
    for use in (False, True):
        torch.manual_seed(0)
        head = torch.nn.Linear(2, 1)
        intercepts = SourceIntercepts(labels, mask.numpy(), sources)
        optimiser = torch.optim.Adam(list(head.parameters()) + ([intercepts.offsets] if use else []), lr=0.05)
        for _ in range(400):
            logit = head(x) + (intercepts(np.arange(800)) if use else 0)
            loss = masked_bce(logit, torch.from_numpy(labels), mask)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        weights[use] = head.weight.detach()[0]
        centred = intercepts(np.arange(800))[:, 0].detach()
        assert abs(float(centred[0] + centred[400])) < 1e-5  # centred: the head scores the average source
    assert weights[False][0] > 0.3  # pooled: the source feature is read as evidence of harm
    assert abs(float(weights[True][0])) < weights[False][0] / 3  # with intercepts: far less
    assert weights[True][1] > 1  # the content feature still decides


def test_weighted_masked_loss_is_the_weighted_mean_over_known_labels():
    logit, label = torch.randn(4, 2), torch.randint(0, 2, (4, 2)).float()
    mask = torch.tensor([[1, 1], [1, 0], [0, 1], [1, 1]], dtype=torch.bool)
    weight = torch.rand(4, 2) + 0.1
    each = torch.nn.functional.binary_cross_entropy_with_logits(logit, label, reduction="none")
    expected = (each * weight * mask).sum() / (weight * mask).sum()
    assert masked_bce(logit, label, mask, weight=weight).item() == pytest.approx(expected.item())
    assert masked_bce(logit, label, mask, weight=torch.ones(4, 2)).item() == pytest.approx(masked_bce(logit, label, mask).item())


def test_negative_downsampling_keeps_all_positives_and_corrects_prior():
    rng = np.random.default_rng(0)
    labels = (rng.random((4000, 2)) < 0.05).astype(np.float32)
    mask = np.ones_like(labels, bool)
    keep = downsample_negatives(labels, mask, 0.25, seed=0)
    pos_rows = np.flatnonzero(labels.sum(1) > 0)
    assert set(pos_rows) <= set(keep)
    neg_kept = len(keep) - len(pos_rows)
    assert neg_kept == pytest.approx(0.25 * (4000 - len(pos_rows)), rel=0.1)
    # odds on the sampled data are 1/rate too high; adding log(rate) to the logit undoes it exactly
    p_sampled = 0.2
    logit = np.log(p_sampled / (1 - p_sampled)) + prior_correction(0.25)
    assert 1 / (1 + np.exp(-logit)) == pytest.approx(0.2 * 0.25 / (0.2 * 0.25 + 0.8))


def test_features_batch_gathers_each_rows_windows():
    owner = np.array([0, 0, 1, 2, 2, 2])
    windows = np.arange(6, dtype=np.float32).reshape(6, 1)
    f = Features(windows=windows, offsets=offsets_from_owner(owner, 3), image=None,
                 has_text=np.ones(3, bool), has_image=np.zeros(3, bool),
                 labels=np.zeros((3, 1), np.float32), label_mask=np.ones((3, 1), bool))
    b = f.batch(np.array([2, 0]))
    assert b["text_windows"].squeeze(1).tolist() == [3, 4, 5, 0, 1]
    assert b["owner"].tolist() == [0, 0, 0, 1, 1]
    sub = f.subset(np.array([1, 2]))
    assert sub.offsets.tolist() == [0, 1, 4] and sub.windows.squeeze(1).tolist() == [2, 3, 4, 5]


def test_text_encoder_windows_cover_long_texts(tiny_bert):
    from moderation.encoders.text import TextEncoder

    # fp32: the check below is exact; bf16 autocast (the CPU default where native) differs in the 3rd digit.
    enc = TextEncoder(TextEncoderConfig(model=str(tiny_bert), max_length=16, window_stride=4, max_windows=3,
                                        precision="fp32"))
    long_text = " ".join(["cats"] * 60)
    emb, owner = enc.encode(["hello", long_text, ""])
    assert owner.tolist().count(1) == 3  # capped at max_windows
    assert owner.tolist().count(0) == 1 and emb.shape == (len(owner), BERT_HIDDEN)
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    alone, _ = enc.encode(["hello"])
    assert np.allclose(alone[0], emb[0], atol=1e-5)  # batching/bucketing does not change results


def pooled_encoders(model_dir, *poolings):
    """Tiny-BERT text encoders, one per pooling, for comparing poolings on the same texts."""
    from moderation.encoders.text import TextEncoder

    return tuple(TextEncoder(TextEncoderConfig(pooling=p, model=str(model_dir), max_length=16, precision="fp32"))
                 for p in poolings)


POOLING_TEXTS = ["hello there", "a longer sentence about cats and dogs"]


def test_middle_and_last_layer_pooling_puts_both_means_side_by_side(tiny_bert):
    both, last = pooled_encoders(tiny_bert, "mean_middle_and_last", "mean")
    texts = POOLING_TEXTS
    emb, _ = both.encode(texts)
    assert both.dim == 2 * BERT_HIDDEN and emb.shape == (2, 2 * BERT_HIDDEN)
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    # The second half is the usual mean pooling (scaled by 1/sqrt 2); the first is another layer's.
    assert np.allclose(emb[:, BERT_HIDDEN:] * 2 ** 0.5, last.encode(texts)[0], atol=1e-5)
    assert not np.allclose(emb[:, :BERT_HIDDEN], emb[:, BERT_HIDDEN:], atol=1e-3)
    assert both.identity != last.identity  # cached embeddings of one pooling never stand in for the other


def test_model_save_load_round_trip(tmp_path):
    from moderation.zeroshot import ZeroShotScorer

    zs = ZeroShotScorer(torch.randn(4, 8), torch.tensor([0, 0, 2, 2]), 3)
    zs.active[2], zs.scale[2], zs.offset[2] = True, 5.0, -2.0
    model = ModerationModel(["a", "b", "c"], "late", 8, 6, zero_shot=zs).eval()
    model.save(tmp_path, {"version": "v1"})
    loaded, meta = ModerationModel.load(tmp_path)
    batch = inputs(batch=4, dt=8, di=6)
    for key in ("fused", "text", "image"):
        assert torch.allclose(model(**batch, for_prediction=True)[key], loaded(**batch, for_prediction=True)[key])
    assert meta["version"] == "v1" and meta["categories"] == ["a", "b", "c"]


def test_benign_twins_count_against_their_class_only(tmp_path):
    """A post's zero-shot similarity is its class's highest seed cosine less contrast_weight times its highest
    twin cosine; a class without twins keeps its seeds' cosine, and both survive save/load."""
    from moderation.zeroshot import ZeroShotScorer

    seed_a, twin_a, seed_b = torch.eye(4)[:3]  # orthonormal: a window's cosines are its coordinates
    protos = torch.stack([seed_a, twin_a, seed_b])
    classes, contrast = torch.tensor([0, 0, 1]), torch.tensor([False, True, False])
    windows = torch.stack([seed_a, 0.6 * seed_a + 0.8 * twin_a, twin_a, 0.6 * seed_b + 0.8 * twin_a])
    owner = torch.arange(4)
    sims = ZeroShotScorer(protos, classes, 2, contrast=contrast, contrast_weight=0.5).similarity(windows, owner, 4)
    assert torch.allclose(sims[:, 0], torch.tensor([1.0, 0.6 - 0.4, 0.0 - 0.5, 0.0 - 0.4]))
    assert torch.allclose(sims[:, 1], torch.tensor([0.0, 0.0, 0.0, 0.6]))  # class 1 has no twins
    plain = ZeroShotScorer(protos, classes, 2, contrast=contrast, contrast_weight=0.0).similarity(windows, owner, 4)
    assert torch.allclose(plain[:, 0], torch.tensor([1.0, 0.6, 0.0, 0.0]))  # the twin is no seed either

    scorer = ZeroShotScorer(protos, classes, 2, contrast=contrast, contrast_weight=0.5)
    scorer.active[0], scorer.scale[0] = True, 3.0
    ModerationModel(["a", "b"], "late", 4, 6, zero_shot=scorer).eval().save(tmp_path, {})
    loaded = ModerationModel.load(tmp_path)[0].zero_shot
    assert loaded.contrast.tolist() == [False, True, False] and loaded.contrast_weight == 0.5
    assert torch.allclose(loaded.similarity(windows, owner, 4), sims)


def test_a_run_saved_before_benign_twins_loads_without_them(tmp_path):
    import json

    from safetensors.torch import load_file, save_file

    from moderation import runfiles
    from moderation.zeroshot import ZeroShotScorer

    scorer = ZeroShotScorer(torch.randn(3, 8), torch.tensor([0, 0, 1]), 2)
    ModerationModel(["a", "b"], "late", 8, 6, zero_shot=scorer).eval().save(tmp_path, {})
    state = {k: v for k, v in load_file(str(tmp_path / runfiles.HEAD)).items() if k != "zero_shot.contrast"}
    save_file(state, str(tmp_path / runfiles.HEAD))
    meta = json.loads((tmp_path / runfiles.MODEL).read_text())
    del meta["zero_shot_contrast_weight"]
    (tmp_path / runfiles.MODEL).write_text(json.dumps(meta))
    loaded = ModerationModel.load(tmp_path)[0].zero_shot
    assert not loaded.contrast.any() and loaded.contrast_weight == 0.0


def test_build_prototypes_marks_each_categorys_twins(tiny_bert):
    from moderation.config import Category
    from moderation.encoders.text import TextEncoder
    from moderation.zeroshot import build_prototypes

    encoder = TextEncoder(TextEncoderConfig(model=str(tiny_bert), max_length=16, precision="fp32"))
    categories = [Category(name="a", description="first", seed_phrases=["one", "two"], contrast_phrases=["three"]),
                  Category(name="b", description="second", seed_phrases=["four"])]
    protos, classes, contrast = build_prototypes(encoder, categories, ["a", "b"])
    assert protos.shape[0] == 6
    assert classes.tolist() == [0, 0, 0, 0, 1, 1] and contrast.tolist() == [False, False, False, True, False, False]


def test_all_layers_pooling_puts_every_layers_mean_side_by_side(tiny_bert):
    every, last = pooled_encoders(tiny_bert, "mean_all_layers", "mean")
    layers = every.model.config.num_hidden_layers
    texts = POOLING_TEXTS
    emb, _ = every.encode(texts)
    assert every.dim == layers * BERT_HIDDEN and emb.shape == (2, layers * BERT_HIDDEN)
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    parts = emb.reshape(2, layers, BERT_HIDDEN) * layers ** 0.5
    assert np.allclose(np.linalg.norm(parts, axis=2), 1.0, atol=1e-5)  # each layer's mean weighs the same
    assert np.allclose(parts[:, -1], last.encode(texts)[0], atol=1e-5)  # the last part is the usual mean pooling
    assert every.identity != last.identity


def test_max_pooling_adds_the_last_layers_peak_between_the_means(tiny_bert):
    """mean_middle_max_and_last: [middle mean | last layer's per-dimension maximum | last mean], each unit length;
    padding never wins the maximum, so a post's vector is the same alone or padded in a batch."""
    peak, both = pooled_encoders(tiny_bert, "mean_middle_max_and_last", "mean_middle_and_last")
    texts = POOLING_TEXTS
    emb, _ = peak.encode(texts)
    assert peak.dim == 3 * BERT_HIDDEN and emb.shape == (2, 3 * BERT_HIDDEN)
    parts = emb.reshape(2, 3, BERT_HIDDEN) * 3 ** 0.5
    assert np.allclose(np.linalg.norm(parts, axis=2), 1.0, atol=1e-5)
    halves = both.encode(texts)[0].reshape(2, 2, BERT_HIDDEN) * 2 ** 0.5
    assert np.allclose(parts[:, [0, 2]], halves, atol=1e-5)  # the means are mean_middle_and_last's
    ids, mask = peak.pad(peak.windows(texts[:1]).input_ids)
    hidden = peak.model(input_ids=ids, attention_mask=mask).last_hidden_state[0]
    expected = torch.nn.functional.normalize(hidden.max(0).values, dim=-1).detach().numpy()
    assert np.allclose(parts[0, 1], expected, atol=1e-5)  # the short text was padded beside the long one
    assert peak.identity != both.identity and peak.similarity_dims == BERT_HIDDEN


@pytest.mark.parametrize("pooling", ["mean_middle_and_last", "mean_all_layers", "mean_middle_max_and_last"])
def test_zero_shot_similarity_of_a_layered_pooling_is_the_last_layers_cosine(tiny_bert, tmp_path, pooling):
    """Seed phrases are compared the way the encoder was trained to compare sentences (last layer's mean), so a
    pooling that adds other layers for the head leaves zero-shot scores as they were; it survives save/load."""
    from moderation.zeroshot import ZeroShotScorer

    layered, last = pooled_encoders(tiny_bert, pooling, "mean")
    phrases, posts = ["a rude reply", "a kind word"], POOLING_TEXTS

    def similarity(encoder):
        protos, _ = encoder.encode(phrases)
        windows, owner = encoder.encode(posts)
        scorer = ZeroShotScorer(torch.from_numpy(protos), torch.tensor([0, 1]), 2, encoder.similarity_dims)
        return scorer, scorer.similarity(torch.from_numpy(windows), torch.from_numpy(owner), len(posts))

    scorer, sims = similarity(layered)
    assert layered.similarity_dims == BERT_HIDDEN and last.similarity_dims is None
    assert torch.allclose(sims, similarity(last)[1], atol=1e-5)
    whole = ZeroShotScorer(scorer.prototypes, scorer.prototype_class, 2)  # the whole vector compares differently
    windows, owner = layered.encode(posts)
    assert not torch.allclose(whole.similarity(torch.from_numpy(windows), torch.from_numpy(owner), 2), sims, atol=1e-5)
    scorer.active[0], scorer.scale[0] = True, 3.0
    model = ModerationModel(["a", "b"], "late", layered.dim, 6, zero_shot=scorer).eval()
    model.save(tmp_path, {})
    assert ModerationModel.load(tmp_path)[0].zero_shot.similarity_dims == BERT_HIDDEN
    with pytest.raises(ValueError, match="similarity_dims"):
        ZeroShotScorer(scorer.prototypes, scorer.prototype_class, 2, layered.dim + 1)
