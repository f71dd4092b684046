"""eval.live_quality over a real SQLite review queue: precision, the recall estimate and reviewer agreement
on constructed decisions, checked against hand calculations. Texts are synthetic placeholders."""

from __future__ import annotations

import pytest

from eval.live_quality import cohen_kappa, live_quality, render_live_quality
from serve.review_queue import NewItem, open_queue

CATEGORIES = ["hate", "violence"]
THRESHOLDS = {c: {"block": 0.8, "review": 0.4} for c in CATEGORIES}


def enqueue(queue, post_id: str, hate: float, action: str = "review", reason: str = "review_band") -> None:
    scores = {"hate": {"fused": hate, "text": hate, "image": None},
              "violence": {"fused": 0.1, "text": 0.1, "image": None}}
    item = NewItem(post_id=post_id, scores=scores, action=action, model_version="m1", reason=reason,
                   text=f"placeholder post {post_id}")
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


def test_precision_and_recall_estimate_match_hand_calculation(queue):
    plan = {}
    # Review band for hate: 12 items, 10 judged; 6 confirmed, 3 refuted, 1 allowed with no label (counts as 0).
    for i in range(12):
        enqueue(queue, f"r{i}", hate=0.6)
    plan.update({f"r{i}": ("block", {"hate": 1}) for i in range(6)})
    plan.update({f"r{i}": ("allow", {"hate": 0}) for i in range(6, 9)})
    plan["r9"] = ("allow", {})
    # Blocked items sent to review: 4 items, 3 confirmed, 1 blocked for violence only (hate unknown).
    for i in range(4):
        enqueue(queue, f"b{i}", hate=0.9, action="block", reason="block_sample")
    plan.update({f"b{i}": ("block", {"hate": 1}) for i in range(3)})
    plan["b3"] = ("block", {"violence": 1})
    # Random sample of allowed posts: 20 items, 19 judged, 2 harmful.
    for i in range(20):
        enqueue(queue, f"s{i}", hate=0.1, action="allow", reason="random_sample")
    plan.update({"s0": ("block", {"hate": 1}), "s1": ("block", {"hate": 1})})
    plan.update({f"s{i}": ("allow", {}) for i in range(2, 19)})
    decide(queue, "alice", plan)

    result = live_quality(queue, THRESHOLDS, sample_rate=0.1)
    hate = result["classes"]["hate"]
    review, block = hate["precision"]["review"], hate["precision"]["block"]
    assert (review["items"], review["judged"], review["confirmed"]) == (12, 10, 6)
    assert review["precision"]["value"] == pytest.approx(0.6)
    assert review["precision"]["low"] < 0.6 < review["precision"]["high"]
    assert (block["items"], block["judged"], block["confirmed"]) == (4, 3, 3) and block["precision"]["value"] == 1.0
    recall = hate["recall"]
    caught, missed = 16 * 9 / 13, 20 * (2 / 19) / 0.1  # flagged x share harmful; sampled x share harmful / rate
    assert recall["estimated_caught"] == pytest.approx(caught) and recall["estimated_missed"] == pytest.approx(missed)
    assert recall["estimate"]["value"] == pytest.approx(caught / (caught + missed))
    assert recall["estimate"]["low"] < recall["estimate"]["value"] < recall["estimate"]["high"]
    # Posts blocked outright (never queued) count as caught when given.
    with_blocked = live_quality(queue, THRESHOLDS, sample_rate=0.1, blocked={"hate": 30})["classes"]["hate"]["recall"]
    assert with_blocked["estimate"]["value"] == pytest.approx((caught + 30) / (caught + 30 + missed))
    # With the service's block sample rate, blocked posts are their own stratum: 4 sampled at 0.5 stand for
    # 8 blocked posts, all 3 judged confirmed -> 8 caught; the review band adds 12 x 6/10.
    sampled = live_quality(queue, THRESHOLDS, sample_rate=0.1, block_sample_rate=0.5)["classes"]["hate"]["recall"]
    caught_sampled = 12 * 6 / 10 + 8 * 1.0
    assert sampled["estimated_caught"] == pytest.approx(caught_sampled)
    assert sampled["estimate"]["value"] == pytest.approx(caught_sampled / (caught_sampled + missed))
    with pytest.raises(ValueError, match="block_sample_rate"):
        live_quality(queue, THRESHOLDS, sample_rate=0.1, block_sample_rate=0.0)
    assert result["items"] == {"total": 36, "decided": 33, "by_reason": {"review_band": 12, "block_sample": 4,
                                                                         "random_sample": 20},
                               "decided_twice": 0, "skipped_by_version": {}}
    # Violence is never flagged (score 0.1) and never found in the sample: no precision, recall undefined (0 / 0).
    assert result["classes"]["violence"]["precision"]["review"]["precision"] is None
    assert result["classes"]["violence"]["recall"]["estimate"] is None
    text = render_live_quality(result)
    assert "| hate | 60.0% [" in text and "understated" in text


def test_second_reviews_give_agreement_and_the_latest_label(queue):
    for i in range(4):
        enqueue(queue, f"r{i}", hate=0.6)
    decide(queue, "alice", {"r0": ("block", {"hate": 1}), "r1": ("block", {"hate": 1}),
                            "r2": ("allow", {"hate": 0}), "r3": ("allow", {})})
    for review in queue.reviews():
        queue.request_second_review(review.item_id, "lead")
    assert queue.claim("alice", 600) == []  # alice never gets her own items back
    decide(queue, "bob", {"r0": ("block", {"hate": 1}), "r1": ("allow", {}), "r2": ("allow", {"hate": 0}),
                          "r3": ("block", {"violence": 1})})
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


def test_docstring_examples_run():
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module("eval.live_quality"))
    assert result.attempted > 0 and result.failed == 0
