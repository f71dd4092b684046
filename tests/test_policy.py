"""Decision policy: thresholds respected, monotone in score, drivers named, random review sampling."""

import random

import pytest

from serve.policy import Action, category_action, decide

T = {"hate": {"block": 0.8, "review": 0.4}, "violence": {"block": 0.9, "review": 0.5}}


def test_bands_at_and_around_thresholds():
    assert category_action(0.8, 0.8, 0.4) == Action.BLOCK  # at the block threshold blocks
    assert category_action(0.79, 0.8, 0.4) == Action.REVIEW
    assert category_action(0.4, 0.8, 0.4) == Action.REVIEW
    assert category_action(0.39, 0.8, 0.4) == Action.ALLOW


def test_decision_is_monotone_in_score():
    order = {Action.ALLOW: 0, Action.REVIEW: 1, Action.BLOCK: 2}
    previous = -1
    for i in range(101):
        d = decide({"hate": i / 100, "violence": 0.0}, T)
        assert order[d.action] >= previous
        previous = order[d.action]


def test_most_severe_category_wins_and_drivers_named():
    d = decide({"hate": 0.5, "violence": 0.95}, T)
    assert d.action == Action.BLOCK and d.drivers == ["violence"]
    assert d.categories == {"hate": Action.REVIEW, "violence": Action.BLOCK}
    d = decide({"hate": 0.6, "violence": 0.7}, T)
    assert d.action == Action.REVIEW and d.drivers == ["violence", "hate"] and d.review_requested


def test_random_sample_of_allowed_posts_goes_to_review():
    rng = random.Random(0)
    decisions = [decide({"hate": 0.1, "violence": 0.1}, T, random_review_rate=0.1, rng=rng) for _ in range(2000)]
    sampled = [d for d in decisions if d.reason == "random_sample"]
    assert all(d.action == Action.REVIEW and d.drivers == [] for d in sampled)
    assert len(sampled) / 2000 == pytest.approx(0.1, abs=0.02)
    assert decide({"hate": 0.1, "violence": 0.1}, T).action == Action.ALLOW  # off by default


def test_missing_thresholds_is_an_error():
    with pytest.raises(ValueError, match=r"no thresholds for categories \['sexual'\]"):
        decide({"sexual": 0.2}, T)
