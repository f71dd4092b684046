"""The decision policy (moderation.policy): bands, monotone in score, classes that may not block never block,
sampling rates, drivers, the vectorised form equal to `decide`, and the thresholds schema's validation."""

import random

import numpy as np
import pytest
from pydantic import ValidationError

from moderation.policy import (
    Action,
    ClassThresholds,
    Reason,
    Sampling,
    Scoring,
    Thresholds,
    decide,
    suggested_labels,
    threshold_actions,
)

T = Thresholds(categories={"hate": ClassThresholds(review=0.4, block=0.8, block_target_met=True),
                           "violence": ClassThresholds(review=0.5, block=0.9, block_target_met=True)})
NEVER_BLOCK = {  # how a class comes to be one that may not block
    "zero_shot": dict(scoring=Scoring.ZERO_SHOT, block_target_met=True),
    "target_missed": dict(block_target_met=False),
    "target_unchecked": dict(block_target_met=None),
}


def random_thresholds(rng: random.Random, categories: list[str]) -> Thresholds:
    entries = {}
    for c in categories:
        review, block = sorted((rng.random(), rng.random()))
        entries[c] = ClassThresholds(review=review, block=block, scoring=rng.choice(list(Scoring)),
                                     block_target_met=rng.choice([True, True, False, None]))
    return Thresholds(categories=entries)


def test_bands_at_and_around_thresholds():
    hate = T["hate"]
    assert hate.action(0.8) == Action.BLOCK  # at the block threshold blocks
    assert hate.action(0.79) == Action.REVIEW
    assert hate.action(0.4) == Action.REVIEW  # at the review threshold reviews
    assert hate.action(0.39) == Action.ALLOW
    d = decide({"hate": 0.85, "violence": 0.1}, T)
    assert (d.action, d.reason, d.review_reason, d.drivers) == (Action.BLOCK, Reason.BLOCK_THRESHOLD, None, ("hate",))
    d = decide({"hate": 0.1, "violence": 0.1}, T)
    assert (d.action, d.reason, d.review_reason, d.drivers) == (Action.ALLOW, Reason.BELOW_THRESHOLDS, None, ())
    assert not d.to_review


@pytest.mark.parametrize("kind", [None, *NEVER_BLOCK])
def test_class_action_is_monotone_in_score(kind):
    rng = random.Random(kind or "trained")
    for _ in range(50):
        review, block = sorted((rng.random(), rng.random()))
        cut = ClassThresholds(review=review, block=block, **(NEVER_BLOCK[kind] if kind else {"block_target_met": True}))
        severities = [cut.action(s).severity for s in np.linspace(0, 1, 201)]
        assert severities == sorted(severities)


def test_decision_is_monotone_in_each_score():
    rng = random.Random(1)
    categories = ["a", "b", "c"]
    for _ in range(200):
        thresholds = random_thresholds(rng, categories)
        scores = {c: rng.random() for c in categories}
        raised = dict(scores, **{(c := rng.choice(categories)): min(1.0, scores[c] + rng.random() * 0.5)})
        assert decide(raised, thresholds).action.severity >= decide(scores, thresholds).action.severity


@pytest.mark.parametrize("kind", sorted(NEVER_BLOCK))
def test_zero_shot_and_unmet_target_classes_never_block(kind):
    t = Thresholds(categories={"sexual": ClassThresholds(review=0.3, block=0.6, **NEVER_BLOCK[kind]),
                               "hate": ClassThresholds(review=0.4, block=0.8, block_target_met=True)})
    assert not t["sexual"].may_block and t["hate"].may_block
    for score in (0.6, 0.9, 1.0):  # at and far above its block threshold: review at most
        d = decide({"sexual": score, "hate": 0.0}, t, Sampling(block_review_rate=1.0))
        assert (d.action, d.reason, d.review_reason, d.drivers) == (Action.REVIEW, Reason.REVIEW_BAND,
                                                                   Reason.REVIEW_BAND, ("sexual",))
    assert decide({"sexual": 1.0, "hate": 0.9}, t).drivers == ("hate",)  # a class that may block still does
    reason = t.never_block()["sexual"]
    assert list(t.never_block()) == ["sexual"] and reason == t["sexual"].no_block_reason and "review at most" in reason
    assert t["hate"].no_block_reason is None
    assert "zero-shot" in ClassThresholds(review=0, block=0, **NEVER_BLOCK["zero_shot"]).no_block_reason
    assert "missed" in ClassThresholds(review=0, block=0, **NEVER_BLOCK["target_missed"]).no_block_reason
    assert "could not be checked" in ClassThresholds(review=0, block=0, **NEVER_BLOCK["target_unchecked"]).no_block_reason


def test_most_severe_category_wins_and_drivers_are_ordered_by_score():
    d = decide({"hate": 0.5, "violence": 0.95}, T)
    assert d.action == Action.BLOCK and d.drivers == ("violence",)
    assert d.category_actions == {"hate": Action.REVIEW, "violence": Action.BLOCK}
    d = decide({"hate": 0.6, "violence": 0.7}, T)
    assert d.action == Action.REVIEW and d.drivers == ("violence", "hate") and d.review_reason == Reason.REVIEW_BAND
    d = decide({"hate": 0.88, "violence": 0.92}, T)
    assert d.drivers == ("violence", "hate")
    rng = random.Random(2)
    for _ in range(200):  # drivers: exactly the categories whose action is the post's, highest score first
        thresholds = random_thresholds(rng, ["a", "b", "c", "d"])
        scores = {c: rng.random() for c in "abcd"}
        d = decide(scores, thresholds)
        expected = [c for c, a in d.category_actions.items() if a == d.action and a != Action.ALLOW]
        assert set(d.drivers) == set(expected)
        assert [scores[c] for c in d.drivers] == sorted((scores[c] for c in d.drivers), reverse=True)


@pytest.mark.parametrize("rate", [0.05, 0.3])
def test_random_sample_of_allowed_posts_goes_to_review_at_its_rate(rate):
    rng = random.Random(0)
    decisions = [decide({"hate": 0.1, "violence": 0.1}, T, Sampling(random_review_rate=rate), rng) for _ in range(4000)]
    sampled = [d for d in decisions if d.to_review]
    assert all(d.action == Action.REVIEW and d.reason == d.review_reason == Reason.RANDOM_SAMPLE and d.drivers == ()
               for d in sampled)
    assert len(sampled) / len(decisions) == pytest.approx(rate, abs=0.02)
    assert all(d.action == Action.ALLOW and d.reason == Reason.BELOW_THRESHOLDS for d in decisions if not d.to_review)


@pytest.mark.parametrize("rate", [0.1, 0.5])
def test_block_sample_goes_to_review_at_its_rate_and_stays_blocked(rate):
    rng = random.Random(3)
    decisions = [decide({"hate": 0.9, "violence": 0.1}, T, Sampling(block_review_rate=rate), rng) for _ in range(4000)]
    assert all(d.action == Action.BLOCK and d.reason == Reason.BLOCK_THRESHOLD for d in decisions)
    sampled = [d for d in decisions if d.to_review]
    assert all(d.review_reason == Reason.BLOCK_SAMPLE for d in sampled)
    assert len(sampled) / len(decisions) == pytest.approx(rate, abs=0.03)


def test_sampling_rates_apply_only_to_their_own_action():
    always = Sampling(random_review_rate=1.0, block_review_rate=1.0)
    never = Sampling()
    assert decide({"hate": 0.1, "violence": 0.1}, T, always).review_reason == Reason.RANDOM_SAMPLE
    assert decide({"hate": 0.9, "violence": 0.1}, T, always).review_reason == Reason.BLOCK_SAMPLE
    assert decide({"hate": 0.5, "violence": 0.1}, T, never).review_reason == Reason.REVIEW_BAND  # not sampled: banded
    assert decide({"hate": 0.1, "violence": 0.1}, T, never).review_reason is None
    assert decide({"hate": 0.9, "violence": 0.1}, T, never).review_reason is None
    assert decide({"hate": 0.1, "violence": 0.1}, T).action == Action.ALLOW  # no sampling by default
    with pytest.raises(ValidationError):
        Sampling(random_review_rate=1.5)
    with pytest.raises(ValidationError):
        Sampling(block_review_rate=-0.1)


def test_threshold_actions_equal_decide_without_sampling_on_random_inputs():
    rng = random.Random(4)
    generator = np.random.default_rng(4)
    categories = ["a", "b", "c", "d", "e"]
    for _ in range(30):
        thresholds = random_thresholds(rng, categories)
        scores = generator.random((200, len(categories)))
        # Scores exactly on a threshold exercise the >= edges.
        scores[:10, 0] = thresholds["a"].block
        scores[10:20, 1] = thresholds["b"].review
        vectorised = threshold_actions(categories, scores, thresholds)
        one_by_one = [decide(dict(zip(categories, map(float, row))), thresholds).action.value for row in scores]
        assert vectorised.tolist() == one_by_one


def test_suggested_labels_are_one_at_or_above_the_review_threshold():
    assert suggested_labels({"hate": 0.4, "violence": 0.49}, T) == {"hate": 1, "violence": 0}
    zero_shot = Thresholds(categories={"x": ClassThresholds(review=0.2, block=0.3, scoring=Scoring.ZERO_SHOT)})
    assert suggested_labels({"x": 0.9}, zero_shot) == {"x": 1}  # a class that never blocks is still labelled
    with pytest.raises(ValueError, match=r"no thresholds for categories \['sexual'\]"):
        suggested_labels({"sexual": 0.2}, T)


def test_thresholds_validation():
    assert ClassThresholds(review=0.5, block=0.5).action(0.5) == Action.REVIEW  # equal is allowed; block unmet
    with pytest.raises(ValidationError, match="review threshold 0.9 is above the block threshold 0.8"):
        ClassThresholds(review=0.9, block=0.8)
    with pytest.raises(ValidationError):
        ClassThresholds(review=-0.1, block=0.5)
    with pytest.raises(ValidationError):
        ClassThresholds(review=0.1, block=1.5)
    with pytest.raises(ValidationError, match="extra"):
        ClassThresholds(review=0.1, block=0.5, blok=0.6)
    with pytest.raises(ValidationError):
        ClassThresholds(review=0.1, block=0.5, scoring="guessed")
    with pytest.raises(ValidationError, match="review threshold"):
        Thresholds.model_validate({"categories": {"hate": {"review": 0.7, "block": 0.6}}})
    assert Thresholds.model_validate(T.model_dump(mode="json")) == T  # thresholds.json round-trips


def test_missing_thresholds_is_an_error_naming_the_category():
    with pytest.raises(ValueError, match=r"no thresholds for categories \['sexual'\]"):
        decide({"sexual": 0.2}, T)
    with pytest.raises(ValueError, match=r"\['sexual'\]"):
        threshold_actions(["hate", "sexual"], np.zeros((1, 2)), T)
    with pytest.raises(KeyError, match="sexual"):
        T["sexual"]
