"""moderation.data.hard_negatives: seeded benign texts with harm words, a disjoint probe set, identity swaps."""

from __future__ import annotations

from collections import Counter

import pytest

from moderation.data.hard_negative_templates import PROBE_TEMPLATES, SLOTS, TRAIN_TEMPLATES
from moderation.data.hard_negatives import (
    DEFAULT_CATEGORIES,
    KINDS,
    generate,
    identity_swaps,
    main,
    write_hard_negatives,
)


def kind_of(row: dict) -> str:
    return row["id"].split("-")[2]


def test_generate_is_seeded_distinct_and_balanced():
    rows = generate(550, seed=3)
    assert rows == generate(550, seed=3)
    assert [r["text"] for r in rows] != [r["text"] for r in generate(550, seed=4)]
    assert len({r["text"] for r in rows}) == len({r["id"] for r in rows}) == 550
    assert Counter(kind_of(r) for r in rows) == dict.fromkeys(KINDS, 50)


def test_rows_are_benign_generic_rows():
    for row in generate(50, categories=["hate", "violence"]):
        assert set(row) == {"id", "text", "labels", "source"}
        assert row["labels"] == {"hate": 0, "violence": 0}
        assert row["source"] == "hard_negatives"
        assert row["text"][0].isupper() and "{" not in row["text"]


def test_every_kind_of_the_issue_is_covered():
    assert set(KINDS) == {"jargon", "figurative", "games_sport", "cooking_gardening", "definitions",
                          "history_news", "fiction", "medical_safety", "counter_speech", "identity",
                          "nonsense_groups"}
    assert set(PROBE_TEMPLATES) == set(TRAIN_TEMPLATES)


def test_probe_uses_other_templates_and_never_repeats_a_training_text():
    train_templates = {t for ts in TRAIN_TEMPLATES.values() for t in ts}
    probe_templates = {t for ts in PROBE_TEMPLATES.values() for t in ts}
    assert not train_templates & probe_templates
    probe = generate(600, seed=0, split="probe")
    train = {r["text"] for r in generate(3000, seed=0)}
    assert not train & {r["text"] for r in probe}
    assert all(r["id"].startswith("hardneg-probe-") for r in probe)
    # The issue's own examples are measured, never trained on.
    examples = {"What does manslaughter mean in law", "This deadline is killing me"}
    assert examples <= {r["text"] for r in generate(1000, split="probe")}


def test_insults_are_placeholders_and_stereotypes_are_only_written_rejected():
    assert all(v.startswith("[") or "slur" in v or "insult" in v for v in SLOTS["insult"])
    counter = [r["text"] for r in generate(330) if kind_of(r) == "counter_speech"]
    assert counter and any(any(v in t for v in SLOTS["insult"]) for t in counter)
    # A mild stereotype appears only in counter-speech, in a sentence that says it is false.
    for split in (TRAIN_TEMPLATES, PROBE_TEMPLATES):
        for kind, templates in split.items():
            for template in (t for t in templates if "{stereotype}" in t):
                assert kind == "counter_speech", template
                assert any(w in template for w in ("false", "otherwise", "debunked", "pretending", "harmful")), template


def test_articles_agree():
    texts = [r["text"] for r in generate(2000)]
    assert not any(" a Indian" in t or " a autistic" in t or " a immigrant" in t for t in texts)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="'test'"):
        generate(5, split="test")
    with pytest.raises(ValueError, match="distinct"):
        generate(100_000, split="probe")


def test_written_file_loads_through_the_generic_jsonl_loader(tmp_path):
    from moderation.config import Category, Config, DatasetConfig
    from moderation.data.build import load_labelled

    path = write_hard_negatives(tmp_path / "hn.jsonl", n=40, seed=1)
    categories = list(DEFAULT_CATEGORIES)
    config = Config(categories=[Category(name=c, description=f"{c} placeholder") for c in categories],
                    datasets={"hard_negatives": DatasetConfig(loader="jsonl", path=str(path), use="train_only")})
    data = load_labelled("hard_negatives", config.datasets["hard_negatives"], config)
    assert len(data) == 40
    assert set(data["split"]) == {"train"}
    assert all(all(m) for m in data["label_mask"]) and not any(any(x) for x in data["labels"])


def test_script_entry_writes_the_probe(tmp_path):
    out = tmp_path / "probe.jsonl"
    main([str(out), "--n", "30", "--seed", "2", "--split", "probe", "--categories", "hate", "violence"])
    lines = out.read_text().splitlines()
    assert len(lines) == 30 and '"labels": {"hate": 0, "violence": 0}' in lines[0]


ROWS = [
    {"id": "a", "text": "Women deserve equal pay.", "labels": {"hate": 0}, "source": "s", "target": ["women"]},
    {"id": "b", "text": "placeholder harmword about Black people and Black people again", "labels": {"hate": 1}},
    {"id": "c", "text": "I take my coffee black, no sugar.", "labels": {"hate": 0}, "group": "g"},
    {"id": "d", "text": "The Muslim family next door and the women's choir", "labels": {"hate": 0}},
]


def test_identity_swaps_keep_labels_and_pin_pairs_to_one_group():
    out = identity_swaps(ROWS, seed=0)
    originals, copies = out[:len(ROWS)], out[len(ROWS):]
    assert [r["id"] for r in copies] == ["a~swap", "b~swap", "d~swap"]
    by_id = {r["id"]: r for r in out}
    for copy in copies:
        original = by_id[copy["id"].removesuffix("~swap")]
        assert copy["labels"] == original["labels"]
        assert copy["group"] == original["group"] == original["id"]
        assert copy["text"] != original["text"]
    assert originals[2] == ROWS[2]  # "black coffee" is not about people: untouched, no copy
    assert by_id["a~swap"]["source"] == "s+identity_swap" and by_id["b~swap"]["source"] == "identity_swap"
    assert by_id["a~swap"]["target"] != ["women"] and by_id["a~swap"]["target"][0] in by_id["a~swap"]["text"].lower()


def test_identity_swaps_replace_every_occurrence_and_the_first_term_found():
    out = {r["id"]: r for r in identity_swaps(ROWS, seed=1)}
    swapped_b = out["b~swap"]["text"]
    assert "Black people" not in swapped_b
    assert swapped_b.startswith("placeholder harmword about ")
    new_term = swapped_b.removeprefix("placeholder harmword about ").split(" and ")[0]
    assert swapped_b.endswith(f"{new_term} again")
    # "Muslim" comes before "women" in row d, so the adjective is swapped and "women" stays.
    assert "women's choir" in out["d~swap"]["text"] and "Muslim" not in out["d~swap"]["text"]
    assert out["a~swap"]["text"][0].isupper()


def test_identity_swaps_with_one_list_and_bad_groups():
    out = identity_swaps([{"id": "1", "text": "men and women", "labels": {"hate": 0}}], ["women", "men"], seed=0)
    assert out[1]["text"] == "women and women"
    with pytest.raises(ValueError, match="two or more"):
        identity_swaps(ROWS, ["women"])
    with pytest.raises(ValueError, match="at least one"):
        identity_swaps(ROWS, [])


def test_the_committed_training_file_is_exactly_what_the_generator_writes(tmp_path):
    """moderation/data/hard_negatives.jsonl (used by configs/default.yaml) is generated, never hand-edited:
    `python -m moderation.data.hard_negatives moderation/data/hard_negatives.jsonl --n 3300 --seed 0`."""
    from pathlib import Path

    import moderation.data

    committed = Path(moderation.data.__file__).parent / "hard_negatives.jsonl"
    fresh = write_hard_negatives(tmp_path / "hard_negatives.jsonl", n=3300, seed=0)
    assert committed.read_bytes() == fresh.read_bytes()
