"""eval.monitoring.live_quality over a real SQLite review queue (serve.db, as the service writes it):
precision, the recall estimate and reviewer agreement on constructed decisions, checked against hand
calculations; the sampling rates come from the items. Texts are synthetic placeholders."""

from __future__ import annotations

import pytest

from eval.monitoring.live_quality import cohen_kappa, live_quality, thresholds_for
from eval.monitoring.live_quality_report import render_live_quality
from moderation.policy import Action, ClassThresholds, Reason, Sampling, Scoring, Thresholds
from serve.db import NewItem, open_queue

CATEGORIES = ["hate", "violence"]
THRESHOLDS = Thresholds(categories={c: ClassThresholds(review=0.4, block=0.8, block_target_met=True)
                                    for c in CATEGORIES})
ALLOW, REVIEW, BLOCK = (a.value for a in Action)
REVIEW_BAND, RANDOM_SAMPLE, BLOCK_SAMPLE = (r.value for r in (Reason.REVIEW_BAND, Reason.RANDOM_SAMPLE,
                                                              Reason.BLOCK_SAMPLE))


def enqueue(queue, post_id: str, hate: float, action: str = REVIEW, reason: str = REVIEW_BAND,
            sampling: Sampling | None = None) -> None:
    scores = {"hate": {"fused": hate, "text": hate, "image": None},
              "violence": {"fused": 0.1, "text": 0.1, "image": None}}
    item = NewItem(post_id=post_id, scores=scores, action=action, model_version="m1", reason=reason,
                   text=f"placeholder post {post_id}", sampling=sampling)
    queue.enqueue(item, THRESHOLDS)


def decide(queue, reviewer: str, plan: dict[str, tuple[str, dict]]) -> None:
    """Claim everything open for `reviewer` and decide the posts in `plan` ({post_id: (action, labels)})."""
    for item in queue.claim(reviewer, 600, n=1000):
        if item.post_id in plan:
            action, labels = plan[item.post_id]
            queue.decide(item.id, reviewer, action, labels)
        else:
            queue.release(item.id, reviewer)


@pytest.fixture
def queue(tmp_path):
    with open_queue(f"sqlite:///{tmp_path / 'queue.db'}", categories=CATEGORIES) as q:
        yield q


def fill_hand_calculation_queue(queue, sampling: Sampling | None) -> None:
    plan = {}
    # Review band for hate: 12 items, 10 judged; 6 confirmed, 3 refuted, 1 allowed with no label (counts as 0).
    for i in range(12):
        enqueue(queue, f"r{i}", hate=0.6, sampling=sampling)
    plan.update({f"r{i}": (BLOCK, {"hate": 1}) for i in range(6)})
    plan.update({f"r{i}": (ALLOW, {"hate": 0}) for i in range(6, 9)})
    plan["r9"] = (ALLOW, {})
    # Blocked items sent to review: 4 items, 3 confirmed, 1 blocked for violence only (hate unknown).
    for i in range(4):
        enqueue(queue, f"b{i}", hate=0.9, action=BLOCK, reason=BLOCK_SAMPLE, sampling=sampling)
    plan.update({f"b{i}": (BLOCK, {"hate": 1}) for i in range(3)})
    plan["b3"] = (BLOCK, {"violence": 1})
    # Random sample of allowed posts: 20 items, 19 judged, 2 harmful.
    for i in range(20):
        enqueue(queue, f"s{i}", hate=0.1, action=ALLOW, reason=RANDOM_SAMPLE, sampling=sampling)
    plan.update({"s0": (BLOCK, {"hate": 1}), "s1": (BLOCK, {"hate": 1})})
    plan.update({f"s{i}": (ALLOW, {}) for i in range(2, 19)})
    decide(queue, "alice", plan)


MISSED = 20 * (2 / 19) / 0.1  # random-sample items x share harmful / rate


def test_precision_and_recall_estimate_match_hand_calculation_with_rates_given_by_hand(queue):
    """Items from before the rates were stored: the rates given by hand are used."""
    fill_hand_calculation_queue(queue, sampling=None)
    result = live_quality(queue, THRESHOLDS, sample_rate=0.1)
    hate = result["classes"]["hate"]
    review, block = hate["precision"]["review"], hate["precision"]["block"]
    assert (review["items"], review["judged"], review["confirmed"]) == (12, 10, 6)
    assert review["precision"]["value"] == pytest.approx(0.6)
    assert review["precision"]["low"] < 0.6 < review["precision"]["high"]
    assert (block["items"], block["judged"], block["confirmed"]) == (4, 3, 3) and block["precision"]["value"] == 1.0
    recall = hate["recall"]
    caught = 16 * 9 / 13  # no block sample known: block-level items count as flagged
    assert recall["estimated_caught"] == pytest.approx(caught) and recall["estimated_missed"] == pytest.approx(MISSED)
    assert recall["estimate"]["value"] == pytest.approx(caught / (caught + MISSED))
    assert recall["estimate"]["low"] < recall["estimate"]["value"] < recall["estimate"]["high"]
    # Posts blocked outright (never queued) count as caught when given.
    with_blocked = live_quality(queue, THRESHOLDS, sample_rate=0.1, blocked={"hate": 30})["classes"]["hate"]["recall"]
    assert with_blocked["estimate"]["value"] == pytest.approx((caught + 30) / (caught + 30 + MISSED))
    # With the service's block sample rate, blocked posts are their own stratum: 4 sampled at 0.5 stand for
    # 8 blocked posts, all 3 judged confirmed -> 8 caught; the review band adds 12 x 6/10.
    sampled = live_quality(queue, THRESHOLDS, sample_rate=0.1, block_sample_rate=0.5)["classes"]["hate"]["recall"]
    assert sampled["estimated_caught"] == pytest.approx(12 * 6 / 10 + 8 * 1.0)
    with pytest.raises(ValueError, match="block_sample_rate"):
        live_quality(queue, THRESHOLDS, sample_rate=0.1, block_sample_rate=0.0)
    assert result["items"] == {"total": 36, "decided": 33, "by_reason": {REVIEW_BAND: 12, BLOCK_SAMPLE: 4,
                                                                         RANDOM_SAMPLE: 20},
                               "decided_twice": 0, "skipped_by_version": {}}
    assert result["sampling"]["items_with_rates"] == 0 and result["sampling"]["items_assumed"] == 36
    # Violence is never flagged (score 0.1) and never found in the sample: no precision, recall undefined (0 / 0).
    assert result["classes"]["violence"]["precision"]["review"]["precision"] is None
    assert result["classes"]["violence"]["recall"]["estimate"] is None
    text = render_live_quality(result)
    assert "| hate | 60.0% [" in text and "understated" in text and "36 older items stored none" in text


def test_rates_stored_with_the_items_are_used_and_the_flags_ignored(queue):
    """The service stores the sampling rates in force with each item: nothing needs to be given by hand."""
    fill_hand_calculation_queue(queue, sampling=Sampling(random_review_rate=0.1, block_review_rate=0.5))
    result = live_quality(queue, THRESHOLDS)  # no rates given
    recall = result["classes"]["hate"]["recall"]
    caught = 12 * 6 / 10 + 8 * 1.0  # the block sample at 0.5 stands for 8 blocked posts
    assert recall["estimated_caught"] == pytest.approx(caught) and recall["estimated_missed"] == pytest.approx(MISSED)
    assert recall["estimate"]["value"] == pytest.approx(caught / (caught + MISSED))
    wrong_flags = live_quality(queue, THRESHOLDS, sample_rate=0.9, block_sample_rate=0.9)
    assert wrong_flags["classes"]["hate"]["recall"]["estimate"] == recall["estimate"]
    assert result["sampling"]["items_with_rates"] == 36 and result["sampling"]["random_review_rates"] == [0.1]
    assert "read from 36 items (random_review_rate 0.1, block_review_rate 0.5)" in render_live_quality(result)


def test_each_random_sample_item_stands_for_one_over_its_own_rate(queue):
    """Rates changed during the window: 10 items sampled at 0.1 and 10 at 0.2 stand for 100 + 50 posts."""
    for i in range(20):
        rate = 0.1 if i < 10 else 0.2
        enqueue(queue, f"s{i}", hate=0.1, action=ALLOW, reason=RANDOM_SAMPLE,
                sampling=Sampling(random_review_rate=rate))
    enqueue(queue, "r0", hate=0.6, sampling=Sampling(random_review_rate=0.2))
    decide(queue, "alice", {**{f"s{i}": (ALLOW, {}) for i in range(1, 20)}, "s0": (BLOCK, {"hate": 1}),
                            "r0": (BLOCK, {"hate": 1})})
    recall = live_quality(queue, THRESHOLDS)["classes"]["hate"]["recall"]
    assert recall["estimated_missed"] == pytest.approx((10 / 0.1 + 10 / 0.2) * (1 / 20))
    assert recall["estimated_caught"] == pytest.approx(1.0)


def test_a_class_that_may_not_block_never_counts_as_block(queue):
    """The model's action per class is the policy's: a zero-shot class at 0.9 sends to review, not block."""
    for i in range(3):
        enqueue(queue, f"z{i}", hate=0.9)
    decide(queue, "alice", {f"z{i}": (BLOCK, {"hate": 1}) for i in range(3)})
    for kind in ({"scoring": Scoring.ZERO_SHOT}, {"block_target_met": False}):
        cut = THRESHOLDS.model_copy(update={"categories": {
            **THRESHOLDS.categories, "hate": ClassThresholds(review=0.4, block=0.8, **kind)}})
        precision = live_quality(queue, cut)["classes"]["hate"]["precision"]
        assert precision["block"]["items"] == 0 and precision["review"]["items"] == 3


def test_second_reviews_give_agreement_and_the_latest_label(queue):
    for i in range(4):
        enqueue(queue, f"r{i}", hate=0.6)
    decide(queue, "alice", {"r0": (BLOCK, {"hate": 1}), "r1": (BLOCK, {"hate": 1}),
                            "r2": (ALLOW, {"hate": 0}), "r3": (ALLOW, {})})
    for review in queue.reviews():
        queue.request_second_review(review.item_id, "lead")
    assert queue.claim("alice", 600) == []  # alice never gets her own items back
    decide(queue, "bob", {"r0": (BLOCK, {"hate": 1}), "r1": (ALLOW, {}), "r2": (ALLOW, {"hate": 0}),
                          "r3": (BLOCK, {"violence": 1})})
    result = live_quality(queue, THRESHOLDS, sample_rate=0.1)
    hate = result["classes"]["hate"]["agreement"]
    # Pairs where both judged hate: r0 (1, 1), r1 (1, 0), r2 (0, 0); r3's second decision leaves hate unknown.
    assert (hate["pairs"], hate["agree"]) == (3, 2)
    assert hate["kappa"] == pytest.approx(cohen_kappa([1, 1, 0], [1, 0, 0]))
    assert result["action_agreement"]["pairs"] == 4 and result["action_agreement"]["agree"] == 2
    # Precision reads the latest decision: bob confirmed hate on r0 only; r3 is unknown for hate after him.
    review = result["classes"]["hate"]["precision"]["review"]
    assert (review["judged"], review["confirmed"]) == (3, 1)
    assert result["items"]["decided_twice"] == 4


def test_cohen_kappa_by_hand_and_edge_cases():
    # observed 0.75; chance 0.5 * 0.25 + 0.5 * 0.75 = 0.5; kappa = (0.75 - 0.5) / 0.5
    assert cohen_kappa([1, 1, 0, 0], [1, 0, 0, 0]) == pytest.approx(0.5)
    assert cohen_kappa([1, 0], [1, 0]) == pytest.approx(1.0)
    assert cohen_kappa([1, 1], [1, 1]) is None  # both always say 1: chance agreement is 1, kappa undefined
    assert cohen_kappa([], []) is None


def test_versions_without_thresholds_are_skipped_and_bad_rate_rejected(queue):
    enqueue(queue, "r0", hate=0.6)
    result = live_quality(queue, lambda version: None, sample_rate=0.1)
    assert result["items"]["total"] == 0 and result["items"]["skipped_by_version"] == {"m1": 1}
    with pytest.raises(ValueError, match="sample_rate.*1.5"):
        live_quality(queue, THRESHOLDS, sample_rate=1.5)


def test_thresholds_for_a_registry_judges_each_version_by_its_own(tmp_path):
    from moderation import runfiles

    (tmp_path / "runs" / "m1").mkdir(parents=True)
    runfiles.write_thresholds(tmp_path / "runs" / "m1", THRESHOLDS)
    lookup, version = thresholds_for(registry=tmp_path)
    assert version is None and lookup("m1") == THRESHOLDS and lookup("m0") is None
