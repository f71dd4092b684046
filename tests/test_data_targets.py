"""Optional `source` and `target` fields of generic JSONL rows, and the `target` column build_splits can keep
for audits (moderation.data.generic, moderation.data.build). Texts are synthetic placeholders."""

from __future__ import annotations

import json

import datasets
import pytest

from moderation.config import config_from_dict
from moderation.data.build import build_splits, with_target
from moderation.data.generic import read_jsonl_rows, target_names
from moderation.data.records import DataError
from tests.synthetic import CATEGORIES, category_config


def write_lines(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_generic_rows_keep_source_and_target(tmp_path):
    path = write_lines(tmp_path / "d.jsonl", [
        {"id": "a", "text": "cats in the park", "labels": {"hate": 0}, "source": "forum", "target": "Women "},
        {"id": "b", "text": "dogs", "labels": {"hate": 1}, "target": ["muslim", "", "Immigrant"]},
        {"id": "c", "text": "weather", "labels": {}},
    ])
    rows = read_jsonl_rows(path, CATEGORIES)
    assert [(r["source"], r["target"]) for r in rows] == [("forum", ["women"]), ("", ["muslim", "immigrant"]), ("", [])]
    assert rows[1]["label__hate"] == "1"  # labels are read as before


@pytest.mark.parametrize("bad", [3, {"group": "x"}, ["ok", 4]])
def test_bad_target_is_named_with_its_line(tmp_path, bad):
    path = write_lines(tmp_path / "d.jsonl", [{"id": "a", "text": "cats", "labels": {}},
                                              {"id": "b", "text": "dogs", "target": bad}])
    with pytest.raises(DataError, match=r"d\.jsonl:2: 'target'.*string"):
        read_jsonl_rows(path, CATEGORIES)
    with pytest.raises(ValueError, match="list of strings"):
        target_names(bad)


def test_build_splits_keeps_target_only_when_asked(tmp_path):
    rows = [{"id": f"p{i}", "text": f"placeholder post number {i}", "labels": {"hate": i % 2},
             **({"target": ["women", "muslim"] if i % 3 == 0 else "immigrant"} if i % 4 else {})} for i in range(60)]
    path = write_lines(tmp_path / "d.jsonl", rows)
    config = config_from_dict({"categories": category_config(),
                               "datasets": {"syn": {"loader": "jsonl", "path": str(path)}},
                               "split": {"validation_fraction": 0.2, "test_fraction": 0.2}})
    plain = build_splits(config)
    assert "target" not in plain["train"].column_names
    kept = build_splits(config, keep_target=True)
    by_id = {r["id"]: r["target"] for split in kept.values() for r in split}
    assert len(by_id) == 60 and [len(s) for s in kept.values()] == [len(s) for s in plain.values()]
    assert by_id["p0"] == [] and by_id["p3"] == ["women", "muslim"] and by_id["p1"] == ["immigrant"]


def test_with_target_reads_toxigen_style_target_group():
    raw = datasets.Dataset.from_dict({"id": ["1", "2"], "target_group": ["Asian", None]})
    assert with_target(raw)["target"] == [["asian"], []]
