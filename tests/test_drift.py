"""Score drift (eval.monitoring.drift) and the monitoring report (eval.monitoring.monitor) on seeded synthetic
scores, plus one pass from the prediction log to the report, the way `moderation monitor` runs it."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from eval.monitoring.drift import (
    DriftThresholds,
    action_mix_at_thresholds,
    compare,
    ks,
    psi,
    served_action_mix,
)
from eval.monitoring.monitor import RecentWindow, monitor, recent_window, summary_lines
from moderation import runfiles
from moderation.policy import Action, ClassThresholds, Reason, Scoring, Thresholds

CATEGORIES = ["hate", "violence", "sexual"]


def thresholds(categories, review=0.5, block=0.8, **kinds) -> Thresholds:
    """Trained classes whose block target was met, except those named in `kinds` ({category: ClassThresholds
    keyword arguments})."""
    return Thresholds(categories={c: ClassThresholds(**{"review": review, "block": block, "block_target_met": True,
                                                        **kinds.get(c, {})}) for c in categories})


THRESHOLDS = thresholds(CATEGORIES)
UNTIL = datetime(2030, 1, 2, tzinfo=timezone.utc)


def scores(rng, n: int, hate=(2, 8)) -> np.ndarray:
    """(n, 3): hate ~ Beta(*hate), violence ~ Beta(2, 8), sexual ~ Beta(1, 9)."""
    return np.column_stack([rng.beta(*hate, n), rng.beta(2, 8, n), rng.beta(1, 9, n)])


@pytest.fixture
def run_dir(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    runfiles.write_json(run / runfiles.MODEL, {"version": "m1"})
    runfiles.write_thresholds(run, THRESHOLDS)
    runfiles.write_reference_scores(run, CATEGORIES, scores(np.random.default_rng(0), 4000), "m1")
    return run


def window(values: np.ndarray, actions=None, reasons=None) -> RecentWindow:
    n = len(values)
    return RecentWindow(CATEGORIES, values, actions or [Action.ALLOW.value] * n, reasons or [None] * n,
                        UNTIL - timedelta(hours=24), UNTIL, "m1", "sqlite:///log.db")


def test_psi_and_ks_are_near_zero_for_the_same_distribution_and_large_for_a_shift():
    rng = np.random.default_rng(1)
    reference, same, shifted = rng.beta(2, 8, 5000), rng.beta(2, 8, 5000), rng.beta(5, 5, 5000)
    assert psi(reference, same) < 0.02
    assert psi(reference, shifted) > 1.0
    assert ks(reference, same)[0] < 0.05 and ks(reference, same)[1] > 0.01
    statistic, pvalue = ks(reference, shifted)
    assert statistic > 0.5 and pvalue < 1e-6


def test_psi_is_finite_with_ties_and_empty_bins_and_rejects_bad_input():
    rng = np.random.default_rng(2)
    piled = np.concatenate([np.zeros(3000), rng.uniform(0, 1, 1000)])  # most of the mass on one value
    assert psi(piled, piled) == pytest.approx(0.0)
    assert np.isfinite(psi(piled, np.ones(500)))  # every recent score in one bin
    with pytest.raises(ValueError, match="recent: no finite scores"):
        psi(piled, [np.nan])
    with pytest.raises(ValueError, match="psi_watch = 0.3"):
        DriftThresholds(psi_drift=0.2, psi_watch=0.3)


def test_compare_flags_only_the_shifted_class():
    rng = np.random.default_rng(3)
    recent = scores(rng, 2000, hate=(6, 4))
    results = {r.category: r for r in compare(CATEGORIES, scores(rng, 4000), CATEGORIES, recent)}
    assert results["hate"].status == "drift" and results["hate"].flagged
    assert results["violence"].status == "stable" and results["sexual"].status == "stable"
    few = compare(CATEGORIES, scores(rng, 4000), ["hate", "extra"], recent[:50, :2])
    assert [(r.category, r.status) for r in few] == [("hate", "too_few"), ("violence", "missing"),
                                                     ("sexual", "missing"), ("extra", "no_reference")]


def test_action_mixes():
    at = action_mix_at_thresholds(["a", "b"], np.array([[0.9, 0.1], [0.6, 0.1], [0.1, np.nan], [0.1, 0.55]]),
                                  thresholds(["a", "b"]))
    assert at == {"allow": 0.25, "review": 0.5, "block": 0.25, "rows": 4}
    allow, review, block = (a.value for a in Action)
    mix = served_action_mix([allow, review, review, block],
                            [None, Reason.RANDOM_SAMPLE.value, Reason.REVIEW_BAND.value, Reason.BLOCK_THRESHOLD.value])
    assert mix["served"]["review"] == 0.5 and mix["at_thresholds"]["review"] == 0.25
    assert mix["at_thresholds"]["allow"] == 0.5
    with pytest.raises(ValueError, match="no thresholds for categories \\['c'\\]"):
        action_mix_at_thresholds(["c"], np.zeros((1, 1)), Thresholds(categories={}))


def test_action_mix_follows_the_policy_for_classes_that_may_not_block():
    """A zero-shot class, or one whose block target was missed, reviews at most: the mix is the policy's."""
    from moderation.policy import decide

    cut = thresholds(["a", "b", "c"], b={"scoring": Scoring.ZERO_SHOT}, c={"block_target_met": False})
    rows = np.array([[0.1, 0.95, 0.1], [0.1, 0.1, 0.95], [0.9, 0.1, 0.1], [0.1, 0.1, 0.1]])
    assert action_mix_at_thresholds(["a", "b", "c"], rows, cut) == {"allow": 0.25, "review": 0.5, "block": 0.25,
                                                                    "rows": 4}
    one_by_one = [decide(dict(zip("abc", map(float, row))), cut).action.value for row in rows]
    assert one_by_one == ["review", "review", "block", "allow"]


def test_monitor_writes_report_with_flagged_class_first(run_dir, tmp_path):
    recent = scores(np.random.default_rng(4), 1500, hate=(6, 4))
    report = monitor(run_dir, window(recent), tmp_path / "out")
    summary = json.loads((tmp_path / "out" / "monitor.json").read_text())
    assert summary["flagged"] == ["hate"]
    assert summary["classes"][0]["category"] == "hate"
    assert summary["action_mix"]["reference_at_thresholds"]["rows"] == 4000
    assert (tmp_path / "out" / "drift.png").read_bytes()[:4] == b"\x89PNG"
    text = report.read_text()
    assert "**Flagged:** hate (drift" in text and "![reference vs recent" in text


def test_monitor_without_reference_says_so(run_dir, tmp_path):
    (run_dir / runfiles.REFERENCE_SCORES).unlink()
    report = monitor(run_dir, window(np.zeros((0, 3))), tmp_path / "out")
    assert "Drift not computed" in report.read_text() and "reference_scores.npz" in report.read_text()
    assert json.loads((tmp_path / "out" / "monitor.json").read_text())["reference"] is None
    assert not (tmp_path / "out" / "drift.png").exists()


def test_from_prediction_log_to_report(run_dir, tmp_path):
    from serve.db import LoggedPrediction, open_prediction_log

    rng = np.random.default_rng(5)
    recent = scores(rng, 300)
    recent[:, 1] = rng.beta(8, 2, 300)  # violence scores shifted up
    allow = Action.ALLOW.value
    entries = [LoggedPrediction(f"p{i}", "m1", dict(zip(CATEGORIES, map(float, row))), allow,
                                created_at=UNTIL - timedelta(hours=1)) for i, row in enumerate(recent)]
    entries.append(LoggedPrediction("old-model", "m0", {"hate": 0.5}, allow, created_at=UNTIL - timedelta(hours=2)))
    entries.append(LoggedPrediction("too-old", "m1", {"hate": 0.5}, allow, created_at=UNTIL - timedelta(hours=30)))
    with open_prediction_log(f"sqlite:///{tmp_path / 'log.db'}", purge=False) as log:
        log.record(entries)
        window = recent_window(log, "m1", hours=24, until=UNTIL)
    assert len(window.actions) == 300 and window.other_versions == {"m0": 1} and "log.db" in window.source
    report = monitor(run_dir, window, tmp_path / "out")
    summary = json.loads((tmp_path / "out" / "monitor.json").read_text())
    assert summary["flagged"] == ["violence"] and summary["window"]["other_versions"] == {"m0": 1}
    lines = summary_lines(report)
    assert lines[0].startswith("model m1: 300 decisions in the last 24 h") and "FLAGGED violence" in lines[1]
    with pytest.raises(ValueError, match="-1 hours"):
        recent_window(log, "m1", hours=-1)


def test_drift_thresholds_flagging_at():
    assert DriftThresholds.flagging_at(0.3) == DriftThresholds(psi_drift=0.3, psi_watch=0.1)
    assert DriftThresholds.flagging_at(0.05) == DriftThresholds(psi_drift=0.05, psi_watch=0.05)
