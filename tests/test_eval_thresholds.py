"""eval.thresholds: targets met on constructed data, extremal choices, review <= block, typed JSON-ready output,
zero-shot classes and missed targets never block."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import precision_score, recall_score

from eval.metrics import threshold_dicts
from eval.thresholds import DEFAULT_BLOCK, DEFAULT_REVIEW
from eval.thresholds import choose_thresholds as choose_typed
from moderation.policy import Scoring, Thresholds

CATEGORIES = ["hate", "violence", "sexual", "self_harm"]


@pytest.fixture
def data():
    """`hate`, `violence`: separable-ish scores; `sexual`: negatives only; `self_harm`: no known label."""
    rng = np.random.default_rng(0)
    n = 3000
    labels = (rng.random((n, 4)) < 0.15).astype(float)
    labels[:, 2] = 0.0
    scores = np.where(labels == 1.0, rng.beta(6, 2, (n, 4)), rng.beta(2, 6, (n, 4)))
    mask = rng.random((n, 4)) < 0.8
    mask[:, 3] = False
    return labels, mask, scores


def choose_thresholds(*args, **kwargs) -> dict[str, dict]:
    """The typed result flattened to {category: {review, block, ..., measured...}} for the assertions below."""
    return threshold_dicts(choose_typed(*args, **kwargs))


def _known(labels, mask, scores, c):
    return labels[mask[:, c], c], scores[mask[:, c], c]


def _brute_force(y, s, cuts):
    """Precision, recall and predicted-positive count at every threshold in `cuts` (score >= cut)."""
    predicted = s[None, :] >= cuts[:, None]  # (T, N)
    tp = (predicted & (y[None, :] == 1)).sum(1)
    pp = predicted.sum(1)
    return tp / np.maximum(pp, 1), tp / (y == 1).sum(), pp


def test_targets_met_and_thresholds_extremal(data):
    labels, mask, scores = data
    out = choose_thresholds(labels, mask, scores, CATEGORIES, block_precision=0.9, review_recall=0.85)
    for c, cat in enumerate(CATEGORIES[:2]):
        y, s = _known(labels, mask, scores, c)
        t = out[cat]
        assert t["source"] == "validation" and t["block_target_met"] and t["review_target_met"]
        assert t["review"] <= t["block"]
        assert precision_score(y, s >= t["block"]) >= 0.9
        assert recall_score(y, s >= t["review"]) >= 0.85
        assert t["block_precision"] == pytest.approx(precision_score(y, s >= t["block"]))
        assert t["review_recall"] == pytest.approx(recall_score(y, s >= t["review"]))
        # block is the LOWEST threshold meeting the precision target; review the HIGHEST meeting recall.
        precision_lower, _, _ = _brute_force(y, s, np.unique(s[s < t["block"]]))
        assert (precision_lower < 0.9).all()
        _, recall_higher, _ = _brute_force(y, s, np.unique(s[s > t["review"]]))
        assert (recall_higher < 0.85).all()


def test_targets_recorded(data):
    labels, mask, scores = data
    out = choose_thresholds(labels, mask, scores, CATEGORIES, block_precision=0.9, review_recall=0.85)
    for cat in CATEGORIES:
        assert out[cat]["target_block_precision"] == 0.9 and out[cat]["target_review_recall"] == 0.85
    assert out["hate"]["support"] == mask[:, 0].sum() and out["hate"]["positives"] == labels[mask[:, 0], 0].sum()


def test_no_positive_gets_defaults(data):
    labels, mask, scores = data
    out = choose_thresholds(labels, mask, scores, CATEGORIES, block_precision=0.9, review_recall=0.85)
    for cat in ("sexual", "self_harm"):
        t = out[cat]
        assert (t["block"], t["review"], t["source"]) == (DEFAULT_BLOCK, DEFAULT_REVIEW, "default")
        assert t["block_target_met"] is None and t["block_recall"] is None
    assert out["self_harm"]["support"] == 0


def test_unreachable_precision_falls_back_and_says_so():
    rng = np.random.default_rng(3)
    labels = (rng.random((400, 1)) < 0.3).astype(float)
    scores = rng.random((400, 1))  # uninformative: no threshold with enough items reaches 0.99
    mask = np.ones_like(labels, dtype=bool)
    t = choose_thresholds(labels, mask, scores, ["hate"], block_precision=0.99, review_recall=0.5,
                          min_predicted_positive=20)["hate"]
    assert t["block_target_met"] is False
    assert t["block_predicted_positive"] >= 20
    y, s = labels[:, 0], scores[:, 0]
    precision, _, pp = _brute_force(y, s, np.unique(s))
    best = precision[pp >= 20].max()
    assert t["block_precision"] == pytest.approx(best)
    assert t["review"] <= t["block"]


def test_a_target_met_only_by_the_few_top_scores_is_luck_and_does_not_count():
    # 1000 negatives and 100 positives scored alike, plus one positive above them all: precision 1.0 at the top
    # post only. With five blocked items needed, the target is missed; with one, the top post "meets" it.
    rng = np.random.default_rng(5)
    labels = np.r_[np.zeros(1000), np.ones(100), 1.0][:, None]
    scores = np.r_[rng.random(1100) * 0.9, 0.99][:, None]
    mask = np.ones_like(labels, dtype=bool)
    strict = choose_thresholds(labels, mask, scores, ["hate"], block_precision=0.9, review_recall=0.5,
                               min_predicted_positive=5)["hate"]
    assert strict["block_target_met"] is False and strict["block_predicted_positive"] >= 5
    lucky = choose_thresholds(labels, mask, scores, ["hate"], block_precision=0.9, review_recall=0.5,
                              min_predicted_positive=1)["hate"]
    assert lucky["block_target_met"] is True and lucky["block_predicted_positive"] == 1


def test_review_clipped_to_block_when_above_it():
    labels = np.array([[1], [1], [0], [1], [0], [0]], dtype=float)
    scores = np.array([[0.95], [0.9], [0.8], [0.7], [0.3], [0.2]])
    # Any threshold reaches precision 0.5 (lowest: 0.2); recall 0.3 is reached as high as 0.95.
    t = choose_thresholds(labels, np.ones_like(labels, bool), scores, ["hate"], block_precision=0.5, review_recall=0.3)["hate"]
    assert t["block"] == 0.2 and t["review"] == t["block"] and t["review_clipped_to_block"] is True
    assert t["review_recall"] >= 0.3


def test_masked_entries_are_ignored(data):
    labels, mask, scores = data
    before = choose_thresholds(labels, mask, scores, CATEGORIES, 0.9, 0.85)
    labels2, scores2 = labels.copy(), scores.copy()
    labels2[~mask] = 1.0 - labels2[~mask]
    scores2[~mask] = np.random.default_rng(9).random((~mask).sum())
    assert choose_thresholds(labels2, mask, scores2, CATEGORIES, 0.9, 0.85) == before


def test_output_is_plain_json_and_reads_back(data):
    labels, mask, scores = data
    typed = choose_typed(labels, mask, scores, CATEGORIES, 0.9, 0.85)
    tree = typed.model_dump(mode="json")
    assert json.loads(json.dumps(tree, allow_nan=False)) == tree
    assert Thresholds.model_validate(tree) == typed
    for entry in tree["categories"].values():
        for key, value in entry["measured"].items():
            assert value is None or type(value) in (float, int, bool, str), (key, type(value))
        assert type(entry["block"]) is float and type(entry["review"]) is float


def test_zero_shot_and_unchecked_classes_never_block(data):
    labels, mask, scores = data
    typed = choose_typed(labels, mask, scores, CATEGORIES, 0.9, 0.85, zero_shot=["violence"])
    assert typed["violence"].scoring == Scoring.ZERO_SHOT and not typed["violence"].may_block
    assert typed["hate"].may_block  # trained and its target met
    never = typed.never_block()
    assert set(never) == {"violence", "sexual", "self_harm"}  # zero-shot; no known positive (twice)
    assert "zero-shot" in never["violence"] and "could not be checked" in never["self_harm"]
    with pytest.raises(ValueError, match="not among the categories"):
        choose_typed(labels, mask, scores, CATEGORIES, 0.9, 0.85, zero_shot=["spam"])


@pytest.mark.parametrize(("precision", "recall", "message"), [(0.0, 0.5, "block_precision"), (0.9, 1.5, "review_recall")])
def test_invalid_targets_name_the_value(data, precision, recall, message):
    labels, mask, scores = data
    with pytest.raises(ValueError, match=message):
        choose_thresholds(labels, mask, scores, CATEGORIES, precision, recall)


def _two_sources(seed=0):
    """One class on two sources: a large one with well separated scores, which alone sets a low block threshold
    at 90% pooled precision, and a smaller one whose negatives score high (another platform's register)."""
    rng = np.random.default_rng(seed)
    big = 4000
    label = np.r_[rng.random(big) < 0.5, rng.random(1000) < 0.1].astype(float)
    score = np.r_[np.where(label[:big] == 1, rng.beta(8, 2, big), rng.beta(2, 8, big)),
                  np.where(label[big:] == 1, rng.beta(8, 2, 1000), rng.beta(5, 3, 1000))]
    sources = np.array(["big"] * big + ["small"] * 1000)
    return label[:, None], np.ones((len(label), 1), bool), score[:, None], sources


def _false_block_rate(label, score, sources, source, block):
    negatives = (sources == source) & (label[:, 0] == 0)
    return float((score[negatives, 0] >= block).mean())


def test_a_false_block_bound_holds_on_every_source_not_only_on_their_pool():
    label, mask, score, sources = _two_sources()
    pooled_only = choose_typed(label, mask, score, ["hate"], 0.9, 0.8)["hate"]
    assert _false_block_rate(label, score, sources, "small", pooled_only.block) > 0.05  # the pool hides it
    bounded = choose_typed(label, mask, score, ["hate"], 0.9, 0.8, sources=sources, max_false_block_rate=0.01)
    t = bounded["hate"]
    assert t.block > pooled_only.block and t.measured["block_raised_for"] == "small"
    for source in ("big", "small"):
        assert _false_block_rate(label, score, sources, source, t.block) <= 0.01
    # The lowest such threshold: a hair lower lets more than 1% of the small source's negatives through.
    assert _false_block_rate(label, score, sources, "small", np.nextafter(t.block, -np.inf)) > 0.01
    assert bounded.targets["max_false_block_rate"] == 0.01 and t.measured["target_max_false_block_rate"] == 0.01
    assert t.review == pooled_only.review  # the review band is a recall choice, untouched by the bound


def test_a_source_with_few_negatives_sets_no_bound_and_an_already_high_block_is_not_raised():
    label, mask, score, sources = _two_sources()
    few = np.r_[np.ones(4000, bool), np.zeros(1000, bool)]
    few[4000:4000 + 150] = True  # 150 rows of the small source: under MIN_SOURCE_NEGATIVES negatives
    t = choose_typed(label[few], mask[few], score[few], ["hate"], 0.9, 0.8, sources=sources[few],
                     max_false_block_rate=0.5)["hate"]
    assert t.measured["block_raised_for"] is None
    assert t.block == choose_typed(label[few], mask[few], score[few], ["hate"], 0.9, 0.8)["hate"].block


def test_sources_and_the_false_block_bound_go_together(data):
    labels, mask, scores = data
    with pytest.raises(ValueError, match="go together"):
        choose_typed(labels, mask, scores, CATEGORIES, 0.9, 0.8, sources=np.array(["a"] * len(labels)))
    with pytest.raises(ValueError, match="shape"):
        choose_typed(labels, mask, scores, CATEGORIES, 0.9, 0.8, sources=np.array(["a"]), max_false_block_rate=0.01)


def test_a_class_whose_bound_was_checked_on_too_few_sources_never_blocks():
    label, mask, score, sources = _two_sources()
    kwargs = {"sources": sources, "max_false_block_rate": 0.01}
    both = choose_typed(label, mask, score, ["hate"], 0.9, 0.8, **kwargs, min_block_sources=2)
    assert both["hate"].may_block and both["hate"].measured["block_sources_checked"] == 2
    assert both.targets["min_block_sources"] == 2
    # Only the big source's rows: its bound holds there by construction, and that is all it says.
    big = sources == "big"
    one = choose_typed(label[big], mask[big], score[big], ["hate"], 0.9, 0.8, sources=sources[big],
                       max_false_block_rate=0.01, min_block_sources=2)["hate"]
    unruled = choose_typed(label[big], mask[big], score[big], ["hate"], 0.9, 0.8, sources=sources[big],
                           max_false_block_rate=0.01)["hate"]
    assert unruled.may_block and not one.may_block and one.block_target_met is False
    assert one.block == unruled.block and one.measured["block_precision"] >= 0.9  # precision alone would block
    assert one.no_block_reason == ("block threshold checked on 1 source(s) with enough known negatives, 2 needed: "
                                   "sends to review at most")
    # A source with fewer than MIN_SOURCE_NEGATIVES negatives does not count as checked.
    few = big | (np.arange(len(label)) >= len(label) - 150)
    assert not choose_typed(label[few], mask[few], score[few], ["hate"], 0.9, 0.8, sources=sources[few],
                            max_false_block_rate=0.01, min_block_sources=2)["hate"].may_block


def test_the_source_count_rule_carries_into_off_domain_blocks_and_needs_the_bound(data):
    from eval.thresholds import block_off_domain

    label, mask, score, sources = _two_sources()
    big = sources == "big"
    off = choose_typed(label[big], mask[big], score[big], ["hate"], 0.9, 0.8, sources=sources[big],
                       max_false_block_rate=0.01, min_block_sources=2, source="cross_source")
    val = choose_typed(label, mask, score, ["hate"], 0.9, 0.8)
    t = block_off_domain(off, val)["hate"]
    assert not t.may_block and "1 source(s)" in t.no_block_reason
    labels, mask, scores = data
    with pytest.raises(ValueError, match="min_block_sources"):
        choose_typed(labels, mask, scores, CATEGORIES, 0.9, 0.8, min_block_sources=2)


def test_a_bound_above_every_score_blocks_nothing_and_the_source_rule_still_applies():
    """A source's highest negative outscores every post: the bound puts block above all scores, so nothing is
    predicted positive at it (precision None); the source count is still recorded, and one source is too few."""
    rng = np.random.default_rng(1)
    label = np.r_[np.zeros(230), np.ones(20), np.zeros(230), np.ones(20)]
    score = np.where(label == 1, rng.uniform(0.5, 0.8, len(label)), rng.uniform(0.0, 0.3, len(label)))
    score[0] = 0.99  # one negative above every positive
    sources = np.array(["a"] * 250 + ["b"] * 250)
    kwargs = {"sources": sources, "max_false_block_rate": 0.001}
    t = choose_typed(label[:, None], np.ones((500, 1), bool), score[:, None], ["hate"], 0.9, 0.8, **kwargs,
                     min_block_sources=2)["hate"]
    assert t.block > score.max() and t.measured["block_precision"] is None and t.measured["block_sources_checked"] == 2
    one = choose_typed(label[:250, None], np.ones((250, 1), bool), score[:250, None], ["hate"], 0.9, 0.8,
                       sources=sources[:250], max_false_block_rate=0.001, min_block_sources=2)["hate"]
    assert not one.may_block and one.measured["block_sources_checked"] == 1
