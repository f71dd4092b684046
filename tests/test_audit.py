"""The model audit (eval.audit, eval.intervals, eval.identity, eval.audit_findings): bootstrap intervals,
identity false-positive rates on constructed data, worse-slice findings, and the written report with its
pictures. Fake scores throughout, except one end-to-end run with a tiny untrained model. Texts are
synthetic placeholders; the report must never contain them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from eval.audit import AuditData, audit_results, audit_scores
from eval.audit_findings import calibration_summary, worse_slices
from eval.identity import identity_false_positive_rates, identity_groups
from eval.intervals import bootstrap_at_threshold, rate_ratio_interval, wilson_interval
from eval.metrics import binary_metrics_at_threshold

CATS = ["hate", "violence", "self_harm"]
THRESHOLDS = {c: {"block": 0.8, "review": 0.5} for c in CATS}


def noisy_scores(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return np.clip(0.45 * labels + 0.55 * rng.random(labels.shape), 0.0, 1.0)


def test_bootstrap_intervals_contain_the_point_estimate_and_shrink_with_n():
    widths = []
    for n in (200, 5000):
        rng = np.random.default_rng(n)
        label = (rng.random(n) < 0.3).astype(float)
        score = noisy_scores(label, rng)
        out = bootstrap_at_threshold(label, score, 0.5, np.random.default_rng(0), n_bootstrap=500)
        exact = binary_metrics_at_threshold(label, score, 0.5)
        for rate in ("precision", "recall", "f1"):
            interval = out[rate]
            assert interval["value"] == pytest.approx(exact[rate])
            assert interval["low"] <= interval["value"] <= interval["high"]
        widths.append(out["recall"]["high"] - out["recall"]["low"])
    assert widths[1] < widths[0] / 3  # ~ 1/sqrt(n): 25x the data, about 5x narrower


def test_bootstrap_is_seeded_and_falls_back_to_wilson_at_0_or_100_percent():
    label, score = np.array([1.0, 1.0, 1.0, 0.0, 0.0]), np.array([0.9, 0.9, 0.9, 0.1, 0.2])
    a = bootstrap_at_threshold(label, score, 0.5, np.random.default_rng(7), 300)
    b = bootstrap_at_threshold(label, score, 0.5, np.random.default_rng(7), 300)
    assert a == b
    # 3 of 3 flagged are harmful: a percentile interval would be [1, 1]; Wilson says how unsure 3 items are.
    assert a["precision"] == wilson_interval(3, 3) and a["precision"]["low"] < 0.5
    assert a["false_positive_rate"]["value"] == 0.0 and a["false_positive_rate"]["high"] > 0.3


def test_identity_terms_are_whole_words_and_neutral():
    assert identity_groups("A Muslim woman and her gay friend") == [
        "religion", "sexual_orientation_gender_identity", "gender"]
    assert identity_groups("transport, whitespace, blacklist, woman-like") == []
    assert identity_groups(None) == []


def test_identity_false_positive_rates_on_constructed_data():
    # 100 benign posts mentioning a group (30 flagged at review, 5 at block), 200 benign posts mentioning
    # none (20 flagged at review, 2 at block), and 50 harmful posts that never enter the comparison.
    texts = ["placeholder about muslim neighbours"] * 100 + ["placeholder about the weather"] * 200 + ["x muslim"] * 50
    score = np.r_[np.full(5, 0.9), np.full(25, 0.6), np.full(70, 0.1),
                  np.full(2, 0.9), np.full(18, 0.6), np.full(180, 0.1), np.full(50, 0.1)]
    labels = np.r_[np.zeros(300), np.ones(50)][:, None]
    out = identity_false_positive_rates(labels, np.ones_like(labels, bool), score[:, None], texts, ["hate"],
                                        {"hate": {"block": 0.8, "review": 0.5}}, np.random.default_rng(0), 500)
    review, block = out["classes"]["hate"]["review"], out["classes"]["hate"]["block"]
    assert (review["mention"]["benign"], review["mention"]["flagged"]) == (100, 30)
    assert (review["other"]["benign"], review["other"]["flagged"]) == (200, 20)
    assert review["mention"]["false_positive_rate"]["value"] == pytest.approx(0.30)
    assert review["ratio"]["value"] == pytest.approx(0.30 / 0.10)
    assert review["ratio"]["low"] > 1.5  # clearly worse for posts that name a group
    assert block["ratio"]["value"] == pytest.approx(0.05 / 0.01)
    assert review["by_group"]["religion"]["ratio"]["value"] == pytest.approx(3.0)
    assert out["groups_mentioned"]["religion"] == 150


def test_rate_ratio_interval_does_not_collapse_at_zero():
    ratio = rate_ratio_interval(0, 40, 10, 100, np.random.default_rng(0))
    assert ratio["value"] == 0.0 and ratio["high"] > 0.05
    assert rate_ratio_interval(3, 10, 0, 100, np.random.default_rng(0)) is None  # undefined: nothing to divide by


def fake_data(n: int = 1200, seed: int = 3) -> tuple[AuditData, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = (rng.random((n, 3)) < [0.25, 0.1, 0.0]).astype(float)
    mask = np.ones((n, 3), bool)
    mask[:, 2] = False  # self_harm unlabelled: must read "no labels", never "0 positives"
    scores = noisy_scores(labels, rng)
    sources = np.where(np.arange(n) % 3 == 0, "forum", "news")
    # The "forum" source misses harmful hate posts: its scores are pushed down.
    scores[(sources == "forum") & (labels[:, 0] == 1), 0] *= 0.4
    texts = [f"SECRET-PLACEHOLDER-{i} {'about women' if i % 4 == 0 else 'about cats'}" for i in range(n)]
    targets = [["women"] if i % 4 == 0 else [] for i in range(n)]
    return AuditData(ids=[str(i) for i in range(n)], texts=texts, images=[None] * n, labels=labels, label_mask=mask,
                     sources=list(sources), targets=targets, description="fake posts"), scores


def test_worse_slices_and_calibration_findings():
    data, scores = fake_data()
    results = audit_results(data, scores, CATS, THRESHOLDS, n_bootstrap=300)
    found = {(f["slice_kind"], f["slice"], f["category"], f["rate"]) for f in results["worse_slices"]}
    assert ("source", "forum", "hate", "recall") in found
    assert not any(s == "news" and r == "recall" for _, s, _, r in found)
    assert "self_harm" not in results["overall"]
    assert worse_slices({}, results["overall"], "source") == []
    cal = calibration_summary(np.zeros((50, 1)), np.ones((50, 1), bool), np.full((50, 1), 0.7), ["hate"])["hate"]
    assert cal["direction"] == "overstates" and cal["ece"] == pytest.approx(0.7)


def test_report_is_written_with_pictures_and_no_post_text(tmp_path):
    data, scores = fake_data()
    report = audit_scores(data, scores, CATS, THRESHOLDS, tmp_path / "audit", {"model_version": "fake-1"},
                          n_bootstrap=200)
    text = report.read_text()
    for heading in ("## In short", "## What the thresholds catch and what they miss",
                    "## Where the scores are miscalibrated", "## Which source datasets fare worse",
                    "## Which targeted groups fare worse", "## Benign posts that mention identity groups"):
        assert heading in text
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    names = {Path(link).name for link in links}
    assert {"pr_hate.png", "reliability_hate.png", "slices_source_hate.png", "identity_fpr.png"} <= names
    for link in links:
        assert (report.parent / link).is_file() and (report.parent / link).read_bytes()[:4] == b"\x89PNG"
    assert "**self_harm**: no labels" in text
    payload = json.loads((report.parent / "audit.json").read_text())
    assert payload["meta"]["model_version"] == "fake-1" and payload["overall"]["hate"]["review"]["recall"]["low"] > 0
    for written in report.parent.iterdir():
        assert b"SECRET-PLACEHOLDER" not in written.read_bytes()


def test_audit_end_to_end_with_a_tiny_model_on_its_own_split(tmp_path, tiny_bert, monkeypatch):
    """The real path: a run directory, its config's generic JSONL dataset (with targets), split "validation",
    scored through Moderator.score_arrays; the report lands under the working directory by default."""
    import yaml

    from eval.audit import audit
    from moderation.model import ModerationModel
    from moderation.policy import ClassThresholds, Thresholds
    from moderation.runfiles import write_thresholds
    from tests.synthetic import CATEGORIES, tiny_config, write_dataset
    from tests.tiny_models import BERT_HIDDEN

    data = write_dataset(tmp_path / "data" / "posts.jsonl", n=120, seed=5)
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    data.write_text("".join(json.dumps({**r, "target": "women" if i % 2 else ["muslim"]}) + "\n"
                            for i, r in enumerate(rows)))
    run = tmp_path / "run"
    run.mkdir()
    config = tiny_config(data, tiny_bert, run)
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    model = ModerationModel(CATEGORIES, "late", text_dim=BERT_HIDDEN, image_dim=0)  # untrained: only the wiring is tested
    model.save(run, {"version": "tiny-audit"})
    write_thresholds(run, Thresholds(categories={
        c: ClassThresholds(block=0.6, review=0.4, block_target_met=True, scoring="zero_shot" if c == "hate" else "trained")
        for c in CATEGORIES}))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    report = audit(run, "validation", n_bootstrap=50, progress=False)
    assert report == work / "audit-validation" / "audit.md"
    payload = json.loads((report.parent / "audit.json").read_text())
    assert payload["meta"]["model_version"] == "tiny-audit" and "validation split" in payload["meta"]["data"]
    assert set(payload["by_target"]) == {"women", "muslim"} and set(payload["by_source"]) == {"synthetic"}
    text = report.read_text()
    assert "thresholds were chosen on this same data" in text
    assert "- **hate**: scored zero-shot: sends to review at most" in text and "**toxicity**:" not in text.split(
        "Classes that never block")[1].split("PR curves")[0]
    assert sorted(p.name for p in run.iterdir()) == ["config.yaml", "head.safetensors", "model.json", "thresholds.json"]


@pytest.mark.parametrize("module", ["eval.intervals", "eval.identity"])
def test_docstring_examples_run(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0
