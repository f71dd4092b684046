"""eval.baseline, eval.plots, eval.report end to end on synthetic placeholder text (no real abusive text)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from matplotlib.image import imread

from eval.baseline import TfidfBaseline
from eval.metrics import per_class_metrics
from eval.plots import plot_pr_curves, plot_threshold_tradeoff
from eval.report import NO_LABELS, write_report
from eval.thresholds import choose_thresholds

CATEGORIES = ["toxicity", "hate", "harassment", "sexual", "violence", "self_harm"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _split(rng, n):
    """Placeholder texts: neutral tokens, plus a marker token per positive category (with label noise)."""
    labels = (rng.random((n, len(CATEGORIES))) < 0.25).astype(float)
    labels[:, 4] = 0.0  # violence: negatives only
    mask = rng.random(labels.shape) < 0.8
    mask[:, 5] = False  # self_harm: never labelled
    texts = []
    for row in labels:
        words = [f"neutral{k}" for k in rng.integers(0, 60, 8)]
        words += [f"marker{c}x{rng.integers(0, 3)}" for c in np.flatnonzero(row) if rng.random() < 0.85]
        texts.append(" ".join(rng.permutation(words)))
    return texts, labels, mask


@pytest.fixture(scope="module")
def run():
    rng = np.random.default_rng(0)
    train, val, test = _split(rng, 600), _split(rng, 300), _split(rng, 300)
    baseline = TfidfBaseline(max_word_features=5000, max_char_features=5000).fit(*train)

    def model_scores(labels):  # a stand-in "model": informative, noisy scores
        return np.clip(0.5 * labels + 0.6 * rng.random(labels.shape), 0, 1)

    return {"baseline": baseline, "train": train, "val": val, "test": test,
            "val_scores": model_scores(val[1]), "test_scores": model_scores(test[1])}


def test_baseline_scores_and_constant_classes(run):
    texts, labels, mask = run["test"]
    scores = run["baseline"].predict_proba(texts)
    assert scores.shape == (300, len(CATEGORIES)) and ((scores >= 0) & (scores <= 1)).all()
    metrics = per_class_metrics(labels, mask, scores, CATEGORIES)
    assert metrics["toxicity"]["average_precision"] > 0.7
    # One label value in training (violence: all 0) -> its training prevalence; no label (self_harm) -> 0.
    assert np.all(scores[:, 4] == 0.0) and np.all(scores[:, 5] == 0.0)
    assert run["baseline"].predict_proba("neutral1 marker0x1").shape == (1, len(CATEGORIES))


def test_baseline_ignores_unknown_labels(run):
    texts, labels, mask = run["train"]
    flipped = labels.copy()
    flipped[~mask] = 1.0 - flipped[~mask]
    model = TfidfBaseline(max_word_features=5000, max_char_features=5000).fit(texts, flipped, mask)
    probe = run["test"][0][:20]
    np.testing.assert_allclose(model.predict_proba(probe), run["baseline"].predict_proba(probe))


def test_baseline_rejects_bad_arguments():
    with pytest.raises(ValueError, match="min_df must be >= 1, got 0"):
        TfidfBaseline(min_df=0)
    with pytest.raises(ValueError, match=r"N = 2 texts, got shape \(3, 1\)"):
        TfidfBaseline().fit(["a", "b"], np.zeros((3, 1)), np.ones((3, 1), bool))


@pytest.fixture(scope="module")
def report(run, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    val_texts, val_labels, val_mask = run["val"]
    thresholds = choose_thresholds(val_labels, val_mask, run["val_scores"], CATEGORIES, 0.8, 0.9)
    texts, labels, mask = run["test"]
    scores = {"model": run["test_scores"], "tfidf_baseline": run["baseline"].predict_proba(texts)}
    plots = plot_pr_curves(labels, mask, scores, CATEGORIES, thresholds, out / "plots", title_suffix="(test)")
    known = mask[:, 1]
    tradeoff = plot_threshold_tradeoff(labels[known, 1], scores["model"][known, 1], "hate", thresholds["hate"],
                                       out / "plots")
    results = {
        name: per_class_metrics(labels, mask, s, CATEGORIES, thresholds if name == "model" else None)
        for name, s in scores.items()
    }
    half = np.arange(300) < 150
    slices = {src: per_class_metrics(labels[rows], mask[rows], scores["model"][rows], CATEGORIES)
              for src, rows in (("source_a", half), ("source_b", ~half))}
    meta = {"run_name": "unit-run", "model_version": "0.0.1", "split_sizes": {"train": 600, "validation": 300, "test": 300}}
    md, js = write_report(out, CATEGORIES, results, thresholds, plots + [tradeoff], meta, slices)
    return {"out": out, "md": md, "json": js, "plots": plots, "tradeoff": tradeoff}


def test_plots_are_valid_pngs(report):
    assert report["tradeoff"].name == "tradeoff_hate.png"
    # violence (no positive) and self_harm (no label) have no PR curve.
    names = sorted(p.name for p in report["plots"])
    assert names == sorted(f"pr_{c}.png" for c in ("toxicity", "hate", "harassment", "sexual"))
    for path in report["plots"] + [report["tradeoff"]]:
        assert path.read_bytes()[:8] == PNG_MAGIC
        image = imread(path)
        assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 200


def test_report_markdown(report):
    md = report["md"].read_text()
    assert md.startswith("# Evaluation report: unit-run")
    assert "0.0.1" in md and "validation 300" in md
    for cat in CATEGORIES:
        assert f"| {cat} |" in md
    assert "PR-AUC (average precision) model" in md and "PR-AUC tfidf_baseline" in md
    assert "Δ model − tfidf_baseline" in md
    self_harm = next(line for line in md.splitlines() if line.startswith("| self_harm | 0 |"))
    assert NO_LABELS in self_harm and "0.000" not in self_harm
    header = next(line for line in md.splitlines() if line.startswith("| category | support"))
    assert self_harm.count("|") == header.count("|")
    assert "over the 4 of 6 classes with labels" in md
    assert "source_a" in md and "source_b" in md
    for path in report["plots"]:
        link = path.relative_to(report["out"]).as_posix()
        assert f"({link})" in md and (report["out"] / link).exists()


def test_report_json(report):
    data = json.loads(report["json"].read_text())
    assert set(data["results"]["test"]) == {"model", "tfidf_baseline"}
    assert data["results"]["test"]["model"]["self_harm"]["average_precision"] is None
    assert data["thresholds"]["hate"]["source"] == "validation"
    assert data["mean_average_precision"]["test"]["model"] > data["mean_average_precision"]["test"]["tfidf_baseline"] - 1
    assert all(not p.startswith("/") for p in data["plots"])


def test_report_several_splits_and_bad_results(tmp_path):
    row = {"support": 3, "positives": 1, "average_precision": 0.5, "roc_auc": 0.5}
    results = {"validation": {"model": {"hate": row}}, "test": {"model": {"hate": row}}}
    slices = {"validation": {"source_a": {"hate": row}}, "test": {"source_b": {"hate": row}}}
    md, js = write_report(tmp_path, ["hate"], results, None, [], {"model_version": "v1"}, slices)
    text = md.read_text()
    assert text.startswith("# Evaluation report: v1")
    assert "## validation" in text and "## test" in text
    assert "## validation by source" in text and "| source_a | 0.500 (1/3) |" in text
    assert set(json.loads(js.read_text())["slices"]) == {"validation", "test"}
    with pytest.raises(ValueError, match="results must be"):
        write_report(tmp_path, ["hate"], {"model": {"hate": 0.5}}, None, [], {})


def test_tradeoff_needs_both_label_values(tmp_path):
    with pytest.raises(ValueError, match="hate: .* got 0 positive of 3"):
        plot_threshold_tradeoff(np.zeros(3), np.full(3, 0.5), "hate", None, tmp_path)
    with pytest.raises(ValueError, match=r"shapes \(3,\) and \(2,\)"):
        plot_threshold_tradeoff(np.zeros(3), np.full(2, 0.5), "hate", None, tmp_path)
