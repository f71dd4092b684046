"""The cross-source benchmark: leave-one-source-out folds on two synthetic sources with the tiny model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from eval.benchmarks import cross_source
from moderation.policy import Action
from tests.synthetic import tiny_config, write_dataset


def test_any_harm_and_decision_rates_count_known_labels_only():
    labels = np.array([[1, 0], [0, 0], [0, 1], [0, 0]], np.float32)
    mask = np.array([[True, True], [True, False], [False, True], [False, False]])
    harmful, benign = cross_source.any_harm(labels, mask)
    assert harmful.tolist() == [True, False, True, False]
    assert benign.tolist() == [False, True, False, False]  # the last row has no known label: neither
    actions = np.array([Action.BLOCK.value, Action.REVIEW.value, Action.ALLOW.value, Action.BLOCK.value])
    rates = cross_source.decision_rates(actions, harmful, benign)
    assert rates == {"benign_flagged": 1.0, "benign_blocked": 0.0, "harmful_caught": 0.5, "harmful_blocked": 0.5}


def test_benign_flags_are_broken_down_by_the_class_that_flags_them():
    from moderation.policy import ClassThresholds, Thresholds

    names = ["toxicity", "violence"]
    thresholds = Thresholds(categories={"toxicity": ClassThresholds(review=0.5, block=0.9),
                                        "violence": ClassThresholds(review=0.6, block=0.95)})
    scores = np.array([[0.7, 0.1], [0.1, 0.8], [0.6, 0.7], [0.1, 0.1], [0.9, 0.9]])
    labels = np.array([[0, 0], [0, 0], [0, 0], [0, 0], [1, 0]], np.float32)
    # The source labels toxicity only: violence is unknown on every row. The last row is harmful: not counted.
    mask = np.array([[True, False]] * 5)
    _, benign = cross_source.any_harm(labels, mask)
    flags = cross_source.benign_flags_by_class(scores, mask, benign, names, thresholds)
    assert flags["by_class"] == {"toxicity": 0.5, "violence": 0.5}
    # Row 2 is flagged by violence alone, a class this source never annotates.
    assert flags["by_labelled_class"] == 0.5


def test_summary_takes_the_mean_and_names_the_worst_source():
    def fold(ap, flagged):
        rates = {"benign_flagged": flagged, "benign_blocked": 0.0, "harmful_caught": 0.9, "harmful_blocked": 0.1}
        return {"mean_average_precision": ap, "any_harm_average_precision": ap, "probe": {"flagged": 0.1},
                "harmless_posts": {"flagged": flagged / 2}, "deployed": rates}

    summary = cross_source.summarise({"a": fold(0.9, 0.1), "b": fold(0.5, 0.3)})
    assert summary["mean_average_precision"]["mean"] == pytest.approx(0.7)
    assert summary["mean_average_precision"]["worst"] == {"source": "b", "value": 0.5}
    assert summary["deployed"]["benign_flagged"]["worst"] == {"source": "b", "value": 0.3}
    assert summary["harmless_posts_flagged"]["mean"] == pytest.approx(0.1)
    assert "cross_source_thresholds" not in summary  # no fold had them
    older = {src: {k: v for k, v in r.items() if k != "harmless_posts"}
             for src, r in {"a": fold(0.9, 0.1), "b": fold(0.5, 0.3)}.items()}
    assert "harmless_posts_flagged" not in cross_source.summarise(older)  # folds measured before the posts


@pytest.fixture(scope="module")
def two_source_config(tiny_bert, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cross")
    tree = tiny_config(write_dataset(tmp / "a.jsonl", n=300, seed=1), tiny_bert, tmp / "run", train={"epochs": 15})
    tree["datasets"]["other"] = {"loader": "jsonl", "path": str(write_dataset(tmp / "b.jsonl", n=300, seed=2))}
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(tree))
    return path


def test_each_source_is_held_out_and_scored_by_a_model_that_never_saw_it(two_source_config, tmp_path):
    args = cross_source.build_parser().parse_args(
        ["--config", str(two_source_config), "--out", str(tmp_path), "--label", "tiny", "--probe-rows", "40",
         "--speed-posts", "20", "--no-write"])
    body = cross_source.run(args)
    summary = json.loads((tmp_path / "tiny" / "summary.json").read_text())
    assert set(summary["sources"]) == {"synthetic", "other"}
    for held_out, result in summary["sources"].items():
        config = json.loads(json.dumps(yaml.safe_load((tmp_path / "tiny" / held_out / "config.yaml").read_text())))
        assert config["datasets"][held_out]["use"] == "eval_only"  # never trained or validated on
        assert result["rows"] == 300 and result["harmful"] + result["benign"] == 300
        # Marker words transfer between the two synthetic sources: a model that learnt ranks well on the other.
        assert result["any_harm_average_precision"] > 0.7
        assert 0 <= result["deployed"]["benign_flagged"] <= 1 and "cross_source_thresholds" in result
        assert 0 <= result["probe"]["flagged"] <= 1
        assert 0 <= result["harmless_posts"]["flagged"] <= 1 and "blocked" in result["harmless_posts"]
        # A higher review recall target can only lower review thresholds: more flagged, more caught.
        trade = result["review_targets"]
        assert list(trade) == ["0.5", "0.6", "0.7", "0.8", "0.9"]
        for key in ("benign_flagged", "harmful_caught"):
            values = [trade[t][key] for t in trade]
            assert values == sorted(values), (key, values)
        # At the config's own target the trade is the deployed decision.
        assert trade[f"{summary['review_recall']:g}"] == result["cross_source_thresholds"]
        flags = result["benign_flags"]
        assert set(flags["by_class"]) == set(summary["summary"]["benign_flags"]["by_class"])
        # A benign post flagged by a class its source labels is flagged: never more than the flagged share.
        assert flags["by_labelled_class"] <= result["cross_source_thresholds"]["benign_flagged"] + 1e-9
        assert max(flags["by_class"].values()) <= result["cross_source_thresholds"]["benign_flagged"] + 1e-9
    assert set(summary["summary"]["review_targets"]) == set(trade)
    assert "by a class it labels" in body
    assert (tmp_path / "tiny" / "review_tradeoff.png").stat().st_size > 10_000
    assert "review recall target" in body
    assert summary["summary"]["any_harm_average_precision"]["worst"]["source"] in {"synthetic", "other"}
    assert "| tiny |" in body and "### tiny: per held-out source" in body
    assert summary["speed_posts"] == 20 and summary["posts_per_second"] > 0
    assert "posts/s in-process" in body
    from eval.benchmarks.harmless import load_posts

    written = sum(len(texts) for kinds in load_posts().values() for texts in kinds.values())
    assert summary["harmless_posts"] == written > 100 and "hand-written harmless flagged" in body


def test_a_run_of_the_same_recipe_takes_its_thresholds_from_the_held_out_sources(two_source_config, tmp_path):
    from eval.evaluate import attach_cross_source, train_and_evaluate
    from moderation import runfiles
    from moderation.config import load_config

    args = cross_source.build_parser().parse_args(
        ["--config", str(two_source_config), "--out", str(tmp_path / "cross"), "--label", "tiny", "--probe-rows", "40",
         "--speed-posts", "0", "--no-write"])
    cross_source.run(args)
    held_out = runfiles.read_predictions(tmp_path / "cross" / "tiny").splits["test"]
    assert sorted(set(held_out.source.tolist())) == ["other", "synthetic"] and len(held_out) == 600

    config = load_config(two_source_config, [f"run.output_dir={tmp_path / 'run'}"])
    run = train_and_evaluate(config, progress=False)
    assert {t.source for t in runfiles.read_thresholds(run).categories.values()} <= {"validation", "default"}
    attach_cross_source(run, tmp_path / "cross" / "tiny", progress=False)
    thresholds = runfiles.read_thresholds(run)
    trained = [c for c, t in thresholds.categories.items() if t.source != "default"]
    assert trained and all(thresholds[c].source == "cross_source" for c in trained)
    tox = thresholds["toxicity"]
    assert tox.measured["support"] == int(held_out.label_mask[:, 0].sum())  # block chosen on all 600 held-out rows
    assert tox.measured["review_chosen_on"] == "validation" and tox.review <= tox.block
    # The config's false-block bound was applied per held-out source (eval.thresholds.false_block_floor).
    assert thresholds.targets["max_false_block_rate"] == 0.01 and "block_raised_for" in tox.measured
    card = (run / runfiles.MODEL_CARD).read_text()
    assert "## On sources it never trained on (cross-source)" in card and "| other | 300 |" in card
    assert "block thresholds chosen on held-out sources" in card
    assert "Benign posts flagged, by the class that flags them" in card and "| mean | " in card
    assert "## Choosing the review band" in card and "(cross_source/review_tradeoff.png)" in card
    assert (run / "cross_source" / "review_tradeoff.png").is_file()
    assert "### Against" not in card

    # Compared with another measurement (here: the same one), the card gains the before/after tables.
    with pytest.raises(FileNotFoundError, match="nothing-here"):
        attach_cross_source(run, tmp_path / "cross" / "tiny", progress=False, compare_to=tmp_path / "nothing-here")
    attach_cross_source(run, tmp_path / "cross" / "tiny", progress=False, compare_to=tmp_path / "cross" / "tiny")
    card = (run / runfiles.MODEL_CARD).read_text()
    assert "### Against `tiny`" in card and "did not improve: none." in card and "| toxicity | 2 |" in card

    # Retraining the run replaces its cross-source thresholds: they were measured for the old model.
    run = train_and_evaluate(config, progress=False, overwrite=True)
    assert not (run / runfiles.CROSS_SOURCE).exists()
    assert all(t.source != "cross_source" for t in runfiles.read_thresholds(run).categories.values())

    # Another recipe (here: a different head) is refused, naming what differs.
    other = train_and_evaluate(load_config(two_source_config, [f"run.output_dir={tmp_path / 'other'}",
                                                                "head.hidden_dim=8"]), progress=False)
    with pytest.raises(ValueError, match="config sections that differ: head"):
        attach_cross_source(other, tmp_path / "cross" / "tiny", progress=False)


def test_the_held_out_source_is_scored_whole_when_the_recipe_caps_rows(two_source_config, tmp_path):
    caps = ["datasets.synthetic.max_samples=50", "datasets.other.max_samples=60"]
    config = cross_source.fold_config(two_source_config, caps, "synthetic", tmp_path)
    assert config.datasets["synthetic"].use == "eval_only" and config.datasets["synthetic"].max_samples is None
    assert config.datasets["other"].max_samples == 60  # the training sources keep the recipe's cap


def test_unknown_sources_are_refused(two_source_config, tmp_path):
    args = cross_source.build_parser().parse_args(
        ["--config", str(two_source_config), "--out", str(tmp_path), "--sources", "nope", "--no-write"])
    with pytest.raises(SystemExit, match="nope"):
        cross_source.measure(args)


def test_release_makes_a_run_the_way_the_shipped_model_is_made(two_source_config, tmp_path):
    """`moderation release`: cross-source folds, the run, its evasion table, block thresholds from the held-out
    sources and a card with both tables, in one call; an existing run is refused before any work."""
    from eval.release import release
    from moderation import runfiles

    overrides = [f"run.output_dir={tmp_path / 'run'}"]
    run = release(two_source_config, overrides, label="tiny", progress=False, write_benchmarks=False,
                  cross_source_out=tmp_path / "cross", evasion_rows=40)
    assert (tmp_path / "cross" / "tiny" / "summary.json").is_file()
    thresholds = runfiles.read_thresholds(run)
    assert any(t.source == "cross_source" for t in thresholds.categories.values())
    evasion = runfiles.read_json(run / runfiles.EVASION)
    assert evasion["rows"] == 40 and evasion["version"] == runfiles.read_json(run / runfiles.MODEL)["version"]
    card = (run / runfiles.MODEL_CARD).read_text()
    assert "## On sources it never trained on (cross-source)" in card and "## Evasion (rewritten words)" in card
    with pytest.raises(runfiles.RunExists):
        release(two_source_config, overrides, label="again", progress=False, write_benchmarks=False,
                cross_source_out=tmp_path / "cross")
    assert not (tmp_path / "cross" / "again").exists()
    with pytest.raises(FileNotFoundError, match="nothing-here"):  # a wrong --compare-to fails before any work
        release(two_source_config, [f"run.output_dir={tmp_path / 'run2'}"], label="again", progress=False,
                write_benchmarks=False, cross_source_out=tmp_path / "cross", compare_to=tmp_path / "nothing-here")
    assert not (tmp_path / "cross" / "again").exists()


def test_the_card_names_the_classes_that_did_not_improve_against_the_reference():
    from eval.model_card import _compared

    def summary(label, hate, toxicity, flagged):
        per = {"hate": {"average_precision": hate}, "toxicity": {"average_precision": toxicity}}
        return {"label": label, "overrides": [], "sources": {"a": {"per_class": per}, "b": {"per_class": per}},
                "summary": {"mean_average_precision": {"mean": (hate + toxicity) / 2},
                            "any_harm_average_precision": {"mean": 0.6},
                            "cross_source_thresholds": {"benign_flagged": {"mean": flagged}},
                            "probe_flagged": {"mean": 0.1}}}

    lines = "\n".join(_compared(summary("new", 0.40, 0.80, 0.30), summary("old", 0.50, 0.70, 0.45),
                                 ["hate", "toxicity"]))
    assert "| hate | 2 | 0.400 | 0.500 | -0.100 |" in lines and "| toxicity | 2 | 0.800 | 0.700 | +0.100 |" in lines
    assert "| benign flagged | 30.0% | 45.0% | -15.0 points |" in lines
    assert "did not improve: hate (-0.100)." in lines


def test_train_seeds_measure_the_same_recipe_again_from_other_head_seeds(two_source_config, tmp_path):
    """`--train-seeds`: every fold again per seed, under its own folder; the row stays the config's own seed,
    and the per-seed table shows how far chance alone moves the figures."""
    parse = cross_source.build_parser().parse_args
    common_args = ["--config", str(two_source_config), "--out", str(tmp_path), "--probe-rows", "20",
                   "--speed-posts", "0", "--no-write"]
    with pytest.raises(SystemExit, match="the config's own train.seed"):
        cross_source.measure(parse([*common_args, "--label", "own", "--train-seeds", "0"]))
    body = cross_source.run(parse([*common_args, "--label", "seeded", "--train-seeds", "1"]))
    summary = json.loads((tmp_path / "seeded" / "summary.json").read_text())
    assert list(summary["train_seeds"]) == ["0", "1"]
    assert summary["train_seeds"]["0"] == summary["summary"]  # the row is the recipe's own seed
    for held_out in ("synthetic", "other"):
        fold = yaml.safe_load((tmp_path / "seeded" / "train-seed-1" / held_out / "config.yaml").read_text())
        assert fold["train"]["seed"] == 1 and fold["datasets"][held_out]["use"] == "eval_only"
    seed_1 = summary["train_seeds"]["1"]
    assert seed_1["mean_average_precision"]["mean"] > 0 and "cross_source_thresholds" in seed_1
    assert "| train.seed |" in body and "\n| 1 | " in body
    # Seed folds are not rows of their own in the table (only <out>/<label>/summary.json files are).
    assert len(cross_source.stored_summaries(tmp_path)) == 1
