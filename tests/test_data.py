"""Generic JSONL, label maps and splits: unknown stays unknown, errors name file/line/row, splits leak-free."""

import json

import pytest

from moderation.config import LabelRule, config_from_dict
from moderation.data.build import build_splits
from moderation.data.generic import read_jsonl_rows, read_prediction_inputs
from moderation.data.labelmap import rule_outcome
from moderation.data.records import DataError
from moderation.data.splits import assign_split, normalise_text
from tests.synthetic import CATEGORIES, category_config, write_dataset


def write_lines(path, rows):
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


def test_generic_rows_absent_label_is_unknown(tmp_path):
    path = write_lines(tmp_path / "d.jsonl", [{"id": "a", "text": "hello", "labels": {"hate": 1}},
                                              {"id": "b", "image": "img/x.png", "text": None, "labels": {}}])
    rows = read_jsonl_rows(path, CATEGORIES)
    assert rows[0]["label__hate"] == "1" and rows[0]["label__toxicity"] is None
    assert rows[1]["image"] == str((tmp_path / "img/x.png").resolve())


@pytest.mark.parametrize("row, message", [
    ("{not json", "d.jsonl:1: not valid JSON"),
    ({"text": "x"}, "d.jsonl:1: missing key 'id'"),
    ({"id": "a", "text": ""}, "neither text nor image"),
    ({"id": "a", "text": "x", "labels": {"toxic": 1}}, "labels.toxic: unknown category"),
    ({"id": "a", "text": "x", "labels": {"hate": 2}}, "labels.hate: value 2 is not 0 or 1"),
    ({"id": "a", "text": "x", "colour": 1}, "unknown key"),
    ({"id": "a", "text": "x", "split": "dev"}, "'split' is 'dev'"),
])
def test_generic_errors_name_file_and_line(tmp_path, row, message):
    path = write_lines(tmp_path / "d.jsonl", [row])
    with pytest.raises(DataError, match=message.replace("(", r"\(")):
        read_jsonl_rows(path, CATEGORIES)


def test_duplicate_ids_rejected(tmp_path):
    path = write_lines(tmp_path / "d.jsonl", [{"id": "a", "text": "x"}, {"id": "a", "text": "y"}])
    with pytest.raises(DataError, match="d.jsonl:2: duplicate id 'a'"):
        read_jsonl_rows(path, CATEGORIES)


def test_plain_text_prediction_inputs(tmp_path):
    (tmp_path / "pic.png").write_bytes(b"x")
    path = tmp_path / "in.txt"
    path.write_text("hello there\n\npic.png\n")
    rows = read_prediction_inputs(path)
    assert [r["text"] for r in rows] == ["hello there", None]
    assert rows[1]["image"].endswith("pic.png")


def test_label_rule_outcomes():
    rule = LabelRule(field="c", positive=["hate"], negative=["neither"], unknown=["?"])
    assert rule_outcome(rule, {"c": "hate"}, "w") == 1
    assert rule_outcome(rule, {"c": "neither"}, "w") == 0
    assert rule_outcome(rule, {"c": "?"}, "w") is None
    assert rule_outcome(rule, {"c": None}, "w") is None
    with pytest.raises(DataError, match="value 'offensive'"):
        rule_outcome(rule, {"c": "offensive"}, "datasets.x (row id '7')")
    multi = LabelRule(field=["a", "b"], positive=["1"], negative=["0"])
    assert rule_outcome(multi, {"a": "0", "b": "1"}, "w") == 1
    assert rule_outcome(multi, {"a": "0", "b": "0"}, "w") == 0
    assert rule_outcome(multi, {"a": "0", "b": None}, "w") is None
    frac = LabelRule(field="f", at_least=0.5)
    assert rule_outcome(frac, {"f": "0.66"}, "w") == 1 and rule_outcome(frac, {"f": "0.33"}, "w") == 0
    # Negatives only: a source's "not offensive" says "no threat" too; its offensive posts stay unknown.
    implied = LabelRule(field="c", negative=["neither"], unknown=["hate", "offensive"])
    assert rule_outcome(implied, {"c": "neither"}, "w") == 0
    assert rule_outcome(implied, {"c": "offensive"}, "w") is None
    with pytest.raises(DataError, match="value 'spam'"):
        rule_outcome(implied, {"c": "spam"}, "w")
    with pytest.raises(ValueError, match="give `positive` and/or `negative`"):
        LabelRule(field="c", unknown=["?"])
    with pytest.raises(ValueError, match="values listed twice"):
        LabelRule(field="c", negative=["neither"], unknown=["neither"])


def test_splits_are_stable_grouped_and_respect_official_ones():
    row = {"id": "1", "text": "Some Text!", "split": "", "group": ""}
    first = assign_split(row, 13, 0.1, 0.1, False)
    assert all(assign_split(row, 13, 0.1, 0.1, False) == first for _ in range(3))
    twin = {**row, "id": "2", "text": "some   text"}
    assert normalise_text(twin["text"]) == normalise_text(row["text"])
    assert assign_split(twin, 13, 0.1, 0.1, False) == first  # duplicates land together
    assert assign_split({**row, "split": "test"}, 13, 0.1, 0.1, False) == "test"
    grouped = [assign_split({"id": str(i), "text": f"t{i}", "split": "", "group": "g"}, 13, 0.3, 0.3, False)
               for i in range(20)]
    assert len(set(grouped)) == 1
    carved = {assign_split({"id": str(i), "text": f"t{i}", "split": "train", "group": ""}, 1, 0.2, 0.2, False)
              for i in range(200)}
    assert carved == {"train", "validation"}  # official train without validation: never moved to test


def test_build_splits_masks_unknown_and_drops_leaks(tmp_path):
    path = write_dataset(tmp_path / "d.jsonl", n=200, seed=1)
    with path.open("a") as fh:  # the same text twice: once pinned to test, once unpinned
        fh.write(json.dumps({"id": "dup-test", "text": "zulu yankee xray", "split": "test", "labels": {"hate": 0}}) + "\n")
        fh.write(json.dumps({"id": "dup-train", "text": "Zulu yankee, xray!", "split": "train", "labels": {"hate": 1}}) + "\n")
    config = config_from_dict({"categories": category_config(),
                               "datasets": {"syn": {"loader": "jsonl", "path": str(path)}}})
    splits = build_splits(config)
    assert sum(len(s) for s in splits.values()) == 201  # the leaking training twin is gone
    assert "dup-train" not in splits["train"]["id"]
    masks = [m for s in splits.values() for m in s["label_mask"]]
    assert not any(m[CATEGORIES.index("self_harm")] for m in masks)  # never labelled -> always masked
    assert set(splits["train"]["source"]) == {"syn"}


def test_empty_dataset_after_filtering_is_an_error(tmp_path):
    path = write_lines(tmp_path / "d.jsonl", [{"id": "a", "text": "x", "labels": {}}])
    config = config_from_dict({"categories": category_config(), "datasets": {"syn": {"loader": "jsonl", "path": str(path)}}})
    with pytest.raises(DataError, match="datasets.syn: no rows left with a known label"):
        build_splits(config)


def test_superseding_dataset_replaces_duplicate_texts(tmp_path):
    base = write_lines(tmp_path / "base.jsonl", [{"id": "b1", "text": "Cats in the park", "labels": {"hate": 0}},
                                                 {"id": "b2", "text": "dogs", "labels": {"hate": 0}}])
    reviewed = write_lines(tmp_path / "rev.jsonl", [{"id": "r1", "text": "cats in the park!", "labels": {"hate": 1}}])
    config = config_from_dict({"categories": category_config(), "datasets": {
        "base": {"loader": "jsonl", "path": str(base)},
        "reviewed": {"loader": "jsonl", "path": str(reviewed), "supersedes_duplicates": True}}})
    rows = [r for split in build_splits(config, only_eval=True).values() for r in split]
    assert sorted(r["id"] for r in rows) == ["b2", "r1"]
