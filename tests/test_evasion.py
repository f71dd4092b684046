"""eval.evasion: seeded perturbations that the normaliser undoes, and the clean-vs-perturbed PR-AUC table."""

from __future__ import annotations

import random
import re

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from eval.evasion import (
    EXACT,
    KINDS,
    ZERO_WIDTH,
    evasion_benchmark,
    evasion_table,
    format_evasion_table,
    perturb,
    perturb_rows,
)
from moderation.encoders.normalize import normalize_text

# Synthetic placeholder text only: "badwordx", "slurtoken" stand in for harmful words.
TEXTS = [
    "please remove this badwordx now",
    "you are such a slurtoken, said nobody at the park",
    "The weather today is calm and friendly.",
    "I think the new movie about cats was great!",
    "Report: threatword posted (again) in the city forum; moderators replied.",
    "Our team ordered twelve chairs for the library",
    "a b c is not a word but badwordx is",
    "Visit https://example.org or mail me@example.com, #hashtag and @someone",
    "Numbers like 2024 and 10am stay, and so does C3PO.",
    "MIXED case Words Like McDonald and iPhone appear too",
]


@pytest.mark.parametrize("kind", EXACT)
def test_normaliser_undoes_each_kind(kind):
    for seed in range(40):
        rng = random.Random(seed)
        for text in TEXTS:
            perturbed = perturb(text, kind, rng, word_rate=1.0 if seed % 2 else 0.4)
            assert normalize_text(perturbed) == normalize_text(text), (seed, perturbed)


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_changes_text(kind):
    rng = random.Random(3)
    changed = [perturb(t, kind, rng, word_rate=1.0) != t for t in TEXTS[:6]]
    assert all(changed)


def test_kinds_write_what_they_say():
    rng = random.Random(0)
    leet = perturb("badwordx", "leet", rng)
    assert leet[0] == "b" and leet[-1] == "x" and any(c in "013457@$" for c in leet)
    assert any(c in ZERO_WIDTH for c in perturb("badwordx", "zero_width", rng))
    assert perturb("badwordx", "spaced", rng) == "b a d w o r d x"
    homoglyph = perturb("badwordx", "homoglyph", rng)
    assert not homoglyph.isascii() and any(c.isascii() for c in homoglyph)
    punctuated = perturb("badwordx", "punctuated", rng)
    assert punctuated.replace(punctuated[1], "") == "badwordx" and punctuated[1] in ".-_"
    masked = perturb("badwordx", "masked", rng)
    assert masked[0] == "b" and masked[-1] == "x" and any(c in "*#%" for c in masked) and len(masked) == 8
    assert masked.translate(str.maketrans("", "", "*#%")) in ("bdwordx", "badwrdx", "bdwrdx")  # vowels first
    stretched = perturb("badwordx", "stretched", rng)
    assert len(stretched) in (10, 11, 12) and re.sub(r"(.)\1+", r"\1", stretched) == "badwordx"


def test_wild_kinds_are_what_the_normaliser_leaves():
    """masked and stretched words are read back only when a word fits (the benchmark measures what is left); the
    normaliser must not mangle the rest either: a masked word glued to a lone letter is not a spaced-out word."""
    for seed in range(10):
        masked = perturb("please remove this badwordx immediately", "masked", random.Random(seed), word_rate=1.0)
        read = normalize_text(masked).split()
        assert read[:3] + read[4:] == ["please", "remove", "this", "immediately"]
        assert read[3] == masked.split()[3] != "badwordx"  # no English word fits: left as written
    assert normalize_text("a#d I h*te th%s") == "and I hate this"
    # Stretched English words are read back; a stretched non-word keeps two of its letters.
    for seed in range(10):
        stretched = perturb("please remove this badwordx now", "stretched", random.Random(seed), word_rate=1.0)
        read = normalize_text(stretched).split()
        assert read[:3] + read[4:] == ["please", "remove", "this", "now"] and read[3] in (
            "badwordx", "baadwordx", "badwoordx", "badwordxx", "bbadwordx", "badwwordx", "baddwordx", "badworddx",
            "badworrdx")
    kinds_drawn = set()
    for seed in range(30):
        out = perturb("badwordx", "any", random.Random(seed))
        kinds_drawn.add("wild" if normalize_text(out) != "badwordx" else "exact")
    assert kinds_drawn == {"wild", "exact"}


def test_perturb_is_seeded_and_leaves_text_without_words():
    assert perturb("b a", "leet", random.Random(1)) == "b a"
    assert perturb("2024 !!", "mixed", random.Random(1)) == "2024 !!"
    first = perturb_rows(TEXTS, rate=0.5, seed=7)
    assert first == perturb_rows(TEXTS, rate=0.5, seed=7)
    assert first != perturb_rows(TEXTS, rate=0.5, seed=8)


def test_perturb_rows_rate_and_missing_text():
    texts = ["please remove this badwordx now"] * 200 + [None]
    out = perturb_rows(texts, rate=0.25, seed=0, kind="leet")
    share = sum(a != b for a, b in zip(texts, out)) / len(texts)
    assert 0.15 < share < 0.35
    assert out[-1] is None
    assert perturb_rows(texts, rate=0.0, seed=0) == texts


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="'rot13'"):
        perturb("text", "rot13", random.Random(0))
    with pytest.raises(ValueError, match="rate"):
        perturb_rows(["text"], rate=1.5, seed=0)


def test_evasion_table_matches_sklearn_and_respects_the_mask():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, size=(60, 2))
    mask = np.ones_like(labels, dtype=bool)
    mask[:10, 1] = False
    clean = np.clip(labels * 0.6 + rng.random((60, 2)) * 0.5, 0, 1)
    perturbed = np.clip(clean - labels * 0.3 + rng.random((60, 2)) * 0.2, 0, 1)
    table = evasion_table(clean, perturbed, labels, mask, ["hate", "violence"])
    keep = mask[:, 1]
    expected_clean = average_precision_score(labels[keep, 1], clean[keep, 1])
    expected_perturbed = average_precision_score(labels[keep, 1], perturbed[keep, 1])
    row = table["violence"]
    assert row["support"] == 50
    assert row["average_precision_clean"] == pytest.approx(expected_clean)
    assert row["drop"] == pytest.approx(expected_clean - expected_perturbed)
    assert table["mean"]["drop"] == pytest.approx((table["hate"]["drop"] + row["drop"]) / 2)
    markdown = format_evasion_table(table)
    assert markdown.count("\n") == 4 and "| violence | 50 |" in markdown


def test_evasion_table_says_which_side_the_drop_comes_from():
    labels = np.array([[1], [1], [0], [0], [0]])
    mask = np.ones_like(labels, dtype=bool)
    clean = np.array([[0.9], [0.8], [0.5], [0.2], [0.1]])
    lost = clean.copy()
    lost[1] = 0.3  # a harmful post whose harm word the rewrite hid
    gained = clean.copy()
    gained[3] = 0.95  # a benign post a reading put a harm word into
    hid = evasion_table(clean, lost, labels, mask, ["hate"])["hate"]
    assert hid["drop"] > 0 and hid["drop_harmful"] == pytest.approx(hid["drop"]) and hid["drop_benign"] == 0
    put_in = evasion_table(clean, gained, labels, mask, ["hate"])["hate"]
    assert put_in["drop"] > 0 and put_in["drop_benign"] == pytest.approx(put_in["drop"]) and put_in["drop_harmful"] == 0
    # A label the row does not have is masked out of both sides, as from the drop itself.
    unknown = mask.copy()
    unknown[3] = False
    assert evasion_table(clean, gained, labels, unknown, ["hate"])["hate"]["drop_benign"] == 0
    markdown = format_evasion_table(evasion_table(clean, lost, labels, mask, ["hate"]))
    assert "harmful posts rewritten only" in markdown and "| hate | 5 | 2 | 1.000 |" in markdown


def test_evasion_tables_kept_before_the_sides_existed_still_render():
    old = {"hate": {"support": 5, "positives": 2, "average_precision_clean": 1.0,
                    "average_precision_perturbed": 0.9, "drop": 0.1}}
    markdown = format_evasion_table(old)
    assert "rewritten only" not in markdown and "| hate | 5 | 2 | 1.000 | 0.900 | 0.100 |" in markdown


def test_evasion_table_undefined_class_and_shape_mismatch():
    table = evasion_table([[0.2], [0.3]], [[0.2], [0.1]], [[0], [0]], [[True], [True]], ["sexual"])
    assert table["sexual"]["drop"] is None and table["mean"]["drop"] is None
    with pytest.raises(ValueError, match="shape"):
        evasion_table([[0.2]], [[0.2, 0.1]], [[0]], [[True]], ["sexual"])


def placeholder_scorer(normalise: bool):
    """Scores 1.0 where the placeholder harm word is read, 0.0 elsewhere (optionally after normalising)."""
    def score(texts):
        read = [normalize_text(t) if normalise else t for t in texts]
        return np.array([[float("badwordx" in t.lower())] for t in read])
    return score


def test_benchmark_shows_the_drop_and_normalising_removes_it():
    texts = [f"please remove this badwordx now {i}" for i in range(20)] + [f"the weather today {i}" for i in range(20)]
    labels = np.array([[1]] * 20 + [[0]] * 20)
    mask = np.ones_like(labels, dtype=bool)
    raw = evasion_benchmark(placeholder_scorer(False), texts, labels, mask, ["hate"], seed=0, word_rate=1.0)
    normalised = evasion_benchmark(placeholder_scorer(True), texts, labels, mask, ["hate"], seed=0, word_rate=1.0)
    assert set(raw) == set(KINDS)
    assert all(raw[kind]["hate"]["drop"] > 0.05 for kind in KINDS)
    assert all(normalised[kind]["hate"]["drop"] == 0.0 for kind in EXACT)
    assert all(normalised[kind]["hate"]["drop"] > 0.05 for kind in ("masked", "stretched", "wild"))


def test_bench_evasion_scores_a_run_as_trained_and_with_the_normaliser(tiny_bert, tmp_path):
    """`moderation bench evasion` on a tiny run: both encoder settings, every kind, the per-class table."""
    from eval.benchmarks import evasion as bench
    from eval.evaluate import train_and_evaluate
    from moderation.config import config_from_dict
    from tests.synthetic import tiny_config, write_dataset

    data = write_dataset(tmp_path / "posts.jsonl", n=200, seed=4)
    run = train_and_evaluate(config_from_dict(tiny_config(data, tiny_bert, tmp_path / "run", train={"epochs": 5},
                                                          run={"baseline": False})), progress=False)
    args = bench.build_parser().parse_args(["--run", str(run), "--max-rows", "30", "--no-write"])
    m = bench.measure(args)
    assert list(m["settings"]) == ["as trained (no normaliser)", "normaliser at inference"] and m["rows"] == 30
    for tables in m["settings"].values():
        assert set(tables) == set(KINDS)
        assert tables["mixed"]["mean"]["average_precision_clean"] is not None
    assert m["deployed"] == "as trained (no normaliser)"
    body = bench.report(m, args)
    assert "| normaliser at inference |" in body and "drop: spaced" in body
    assert "as trained (no normaliser) (as the run deploys it)" in body
    shown = [kind for kind in ("mixed", "masked", "wild") if f"Per class, {kind} (" in body]
    assert shown == ["mixed", "masked", "wild"]
    assert body.count("| drop, harmful posts rewritten only | drop, benign posts rewritten only |") == 3

    # Kept with the run, it reaches the model card on the next evaluation, for this model only.
    from eval.evaluate import evaluate_run
    from moderation import runfiles

    bench.keep_in_run(m.pop("run_dir"), m)
    evaluate_run(run, progress=False)
    card = (run / runfiles.MODEL_CARD).read_text()
    assert "## Evasion (rewritten words)" in card and "| as trained (no normaliser) (deployed) |" in card
    assert "Per class, masked rewrites, as deployed:" in card and "benign posts rewritten only" in card
    stale = {**m, "version": "some-older-model"}
    runfiles.write_json(run / runfiles.EVASION, stale)
    evaluate_run(run, progress=False)
    assert "## Evasion" not in (run / runfiles.MODEL_CARD).read_text()


def test_bench_evasion_switches_the_lexical_view_s_normaliser_with_the_encoder_s(tiny_bert, tmp_path, monkeypatch):
    """The contrast row is what the normaliser buys, so neither view may keep normalising in it."""
    from eval.benchmarks import evasion as bench
    from eval.evaluate import train_and_evaluate
    from moderation.config import config_from_dict
    from moderation.lexical import LexicalModel
    from tests.synthetic import tiny_config, write_dataset

    data = write_dataset(tmp_path / "posts.jsonl", n=200, seed=4)
    run = train_and_evaluate(config_from_dict(tiny_config(
        data, tiny_bert, tmp_path / "run", train={"epochs": 3}, run={"baseline": False}, lexical={"weight": 0.5},
        text_encoder={"normalize": True})), progress=False)
    seen, prepared = set(), LexicalModel._prepared

    def spy(self, texts):
        seen.add(self.normalize)
        return prepared(self, texts)

    monkeypatch.setattr(LexicalModel, "_prepared", spy)
    args = bench.build_parser().parse_args(["--run", str(run), "--max-rows", "20", "--kinds", "leet", "--no-write"])
    m = bench.measure(args)
    assert list(m["settings"]) == ["as trained (normaliser on)", "normaliser off at inference"]
    assert seen == {True, False}


def test_a_trial_on_some_kinds_leaves_the_runs_table_alone(tiny_bert, tmp_path):
    """`bench evasion --kinds ...` once replaced the shipped model's whole evasion table with three kinds."""
    from eval.benchmarks import evasion as bench
    from eval.evaluate import train_and_evaluate
    from moderation import runfiles
    from moderation.config import config_from_dict
    from tests.synthetic import tiny_config, write_dataset

    data = write_dataset(tmp_path / "posts.jsonl", n=200, seed=4)
    run = train_and_evaluate(config_from_dict(tiny_config(data, tiny_bert, tmp_path / "run", train={"epochs": 2},
                                                          run={"baseline": False})), progress=False)
    parse = bench.build_parser().parse_args
    bench.run(parse(["--run", str(run), "--max-rows", "30", "--kinds", "masked", "--no-write"]))
    assert not (run / runfiles.EVASION).exists()
    bench.run(parse(["--run", str(run), "--max-rows", "30", "--no-write"]))
    assert set(runfiles.read_json(run / runfiles.EVASION)["settings"]["as trained (no normaliser)"]) == set(KINDS)
