"""eval.metrics: equal to sklearn on seeded random inputs, masked labels truly ignored, undefined is None."""

from __future__ import annotations

import ast
import doctest
import importlib
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    precision_recall_fscore_support,
    roc_auc_score,
)

from eval.metrics import (
    binary_metrics_at_threshold,
    expected_calibration_error,
    mean_average_precision,
    per_class_metrics,
    validate_inputs,
)

CATEGORIES = ["toxicity", "hate", "harassment", "sexual", "violence", "self_harm"]
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def data():
    """Random labels/scores; `sexual` has known negatives only, `self_harm` no known label at all."""
    rng = np.random.default_rng(0)
    n, c = 500, len(CATEGORIES)
    labels = (rng.random((n, c)) < 0.2).astype(float)
    scores = np.clip(0.35 * labels + rng.random((n, c)) * 0.7, 0, 1)
    label_mask = rng.random((n, c)) < 0.7
    labels[:, 3] = 0.0
    label_mask[:, 5] = False
    return labels, label_mask, scores


def _thresholds(block=0.6, review=0.4):
    return {cat: {"block": block, "review": review} for cat in CATEGORIES}


def test_ranking_and_calibration_equal_sklearn(data):
    labels, mask, scores = data
    out = per_class_metrics(labels, mask, scores, CATEGORIES)
    for c in (0, 1, 2, 4):  # the classes with a known positive and a known negative
        cat = CATEGORIES[c]
        y, s = labels[mask[:, c], c], scores[mask[:, c], c]
        assert out[cat]["support"] == mask[:, c].sum()
        assert out[cat]["positives"] == y.sum()
        assert out[cat]["prevalence"] == pytest.approx(y.mean())
        assert out[cat]["average_precision"] == pytest.approx(average_precision_score(y, s), abs=1e-12)
        assert out[cat]["roc_auc"] == pytest.approx(roc_auc_score(y, s), abs=1e-12)
        assert out[cat]["brier"] == pytest.approx(brier_score_loss(y, s), abs=1e-12)


def test_threshold_metrics_equal_sklearn(data):
    labels, mask, scores = data
    out = per_class_metrics(labels, mask, scores, CATEGORIES, _thresholds(0.6, 0.4))
    for c, cat in enumerate(CATEGORIES[:3]):
        y, s = labels[mask[:, c], c], scores[mask[:, c], c]
        for kind, t in (("block", 0.6), ("review", 0.4)):
            p, r, f, _ = precision_recall_fscore_support(y, s >= t, average="binary", zero_division=0)
            assert out[cat][f"{kind}_threshold"] == t
            assert out[cat][f"{kind}_precision"] == pytest.approx(p)
            assert out[cat][f"{kind}_recall"] == pytest.approx(r)
            assert out[cat][f"{kind}_f1"] == pytest.approx(f)
            assert out[cat][f"{kind}_predicted_positive"] == int((s >= t).sum())


def test_ece_equals_reference_loop():
    rng = np.random.default_rng(1)
    y = (rng.random(300) < 0.3).astype(float)
    s = rng.random(300)
    s[:3] = [0.0, 1.0, 0.5]  # the edges: 1.0 belongs to the last bin
    expected = 0.0
    for b in range(10):
        lo, hi = b / 10, (b + 1) / 10
        inside = (s >= lo) & ((s < hi) if b < 9 else (s <= hi))
        if inside.any():
            expected += inside.mean() * abs(y[inside].mean() - s[inside].mean())
    assert expected_calibration_error(y, s) == pytest.approx(expected, abs=1e-12)


def test_masked_entries_are_ignored(data):
    labels, mask, scores = data
    before = per_class_metrics(labels, mask, scores, CATEGORIES, _thresholds())
    rng = np.random.default_rng(7)
    labels2, scores2 = labels.copy(), scores.copy()
    labels2[~mask] = 1.0 - labels2[~mask]  # unknown labels flipped: would change everything if counted
    scores2[~mask] = rng.random((~mask).sum())
    assert per_class_metrics(labels2, mask, scores2, CATEGORIES, _thresholds()) == before
    assert mean_average_precision(labels2, mask, scores2) == mean_average_precision(labels, mask, scores)


def test_unknown_labels_may_hold_nan(data):
    labels, mask, scores = data
    with_nan = labels.copy()
    with_nan[~mask] = np.nan
    assert per_class_metrics(with_nan, mask, scores, CATEGORIES) == per_class_metrics(labels, mask, scores, CATEGORIES)


def test_undefined_metrics_are_none_not_zero(data):
    labels, mask, scores = data
    out = per_class_metrics(labels, mask, scores, CATEGORIES, _thresholds())
    no_positive, no_label = out["sexual"], out["self_harm"]
    assert no_positive["support"] > 0 and no_positive["positives"] == 0
    assert no_positive["average_precision"] is None and no_positive["roc_auc"] is None
    assert no_positive["block_recall"] is None and no_positive["prevalence"] == 0.0
    assert no_label["support"] == 0
    for key in ("average_precision", "roc_auc", "prevalence", "brier", "ece", "block_precision", "block_recall", "block_f1"):
        assert no_label[key] is None, key


def test_no_known_negative_gives_none():
    out = per_class_metrics([[1.0], [1.0]], [[True], [True]], [[0.2], [0.9]], ["hate"])
    assert out["hate"]["average_precision"] is None and out["hate"]["roc_auc"] is None


def test_precision_none_without_predicted_positive():
    at = binary_metrics_at_threshold(np.array([1.0, 0.0]), np.array([0.1, 0.2]), 0.5)
    assert at == {"precision": None, "recall": 0.0, "f1": 0.0, "predicted_positive": 0}


def test_mean_average_precision_over_rankable_classes(data):
    labels, mask, scores = data
    expected = np.mean([
        average_precision_score(labels[mask[:, c], c], scores[mask[:, c], c]) for c in (0, 1, 2, 4)
    ])
    assert mean_average_precision(labels, mask, scores) == pytest.approx(expected, abs=1e-12)
    with pytest.raises(ValueError, match="no class"):
        mean_average_precision(np.zeros((3, 2)), np.ones((3, 2), bool), np.full((3, 2), 0.5))


@pytest.mark.parametrize(
    ("labels", "mask", "scores", "message"),
    [
        (np.zeros((4, 2)), np.ones((4, 3), bool), np.zeros((4, 2)), r"\(4, 2\).*\(4, 3\)"),
        (np.zeros((4, 2)), np.ones((4, 2), int), np.zeros((4, 2)), "bool"),
        (np.full((4, 2), 2.0), np.ones((4, 2), bool), np.zeros((4, 2)), "0 or 1, got \\[2.0"),
        (np.zeros((4, 2)), np.ones((4, 2), bool), np.full((4, 2), 1.5), "1.5 at row 0"),
        (np.zeros((4, 2)), np.ones((4, 2), bool), np.full((4, 2), np.nan), "nan at row 0"),
        (np.zeros(4), np.ones(4, bool), np.zeros(4), "2-D"),
    ],
)
def test_invalid_inputs_name_the_bad_value(labels, mask, scores, message):
    with pytest.raises(ValueError, match=message):
        validate_inputs(labels, mask, scores)


def test_category_count_and_missing_thresholds_are_errors(data):
    labels, mask, scores = data
    with pytest.raises(ValueError, match="got 2 categories"):
        per_class_metrics(labels, mask, scores, ["a", "b"])
    with pytest.raises(ValueError, match="self_harm"):
        per_class_metrics(labels, mask, scores, CATEGORIES, {c: {"block": 0.5, "review": 0.4} for c in CATEGORIES[:5]})


@pytest.mark.parametrize("module", ["eval.metrics", "eval.thresholds", "eval.baseline"])
def test_docstring_examples_run(module):
    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0


def test_eval_imports_no_torch_no_serve_and_never_bare_eval():
    for path in sorted((REPO / "eval").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
                assert "eval" not in names, f"{path.name}: bare `import eval` shadows the builtin"
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            for name in names:
                top = name.split(".")[0]
                # numpy only: training injects eval's metrics, and eval never reaches forward into serve.
                assert top not in {"torch", "transformers", "serve"}, f"{path.name} imports {name}"
