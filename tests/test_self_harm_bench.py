"""`moderation bench self-harm` on a tiny run: self_harm is zero-shot (no labelled rows in training) and is
measured on a separate labelled set, as the shipped model is on the self-harm sets."""

from __future__ import annotations

import json
import random

import yaml

from tests.synthetic import make_post, tiny_config, write_dataset


def test_self_harm_bench_measures_the_zero_shot_score_on_an_unseen_set(tiny_bert, tmp_path):
    from eval.benchmarks import self_harm as bench
    from eval.evaluate import train_and_evaluate
    from moderation.config import config_from_dict

    train = write_dataset(tmp_path / "train.jsonl", n=200, seed=4)  # self_harm never labelled: zero-shot
    run = train_and_evaluate(config_from_dict(tiny_config(train, tiny_bert, tmp_path / "run", train={"epochs": 5},
                                                          run={"baseline": False})), progress=False)
    rng = random.Random(7)
    rows = [make_post(rng, i, ["self_harm"] if i % 3 == 0 else []) for i in range(60)]
    for row in rows:
        row["labels"] = {"self_harm": row["labels"]["self_harm"]}  # the set labels self_harm only
    sets = tmp_path / "selfharm.jsonl"
    sets.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tree = tiny_config(train, tiny_bert, tmp_path / "unused")
    tree["datasets"] = {"selfharm_set": {"loader": "jsonl", "path": str(sets), "use": "eval_only"},
                        "no_self_harm_labels": {"loader": "jsonl", "path": str(train), "use": "eval_only"}}
    (tmp_path / "sets.yaml").write_text(yaml.safe_dump(tree))

    args = bench.build_parser().parse_args(["--run", str(run), "--sets-config", str(tmp_path / "sets.yaml"),
                                            "--no-write"])
    m = bench.measure(args)
    assert m["scoring"] != "trained" and not m["may_block"]  # zero-shot never blocks
    assert list(m["sets"]) == ["selfharm_set"]  # a set without self_harm labels is skipped
    result = m["sets"]["selfharm_set"]
    assert result["support"] == 60 and result["positives"] == 20
    assert 0 <= result["average_precision"] <= 1 and 0 <= result["negatives_flagged_for_self_harm"] <= 1
    everyday = json.loads(bench.EVERYDAY_POSTS.read_text())
    for part, r in m["everyday"].items():  # the project's everyday posts, none about self-harm
        assert r["support"] == len(everyday[part]) >= 50
        assert 0 <= r["flagged_for_self_harm"] <= r["flagged_any_class"] <= 1
        assert len(r["examples"]) == min(5, round(r["flagged_for_self_harm"] * r["support"]))
    assert set(m["everyday"]) == set(bench.EVERYDAY_PARTS)
    body = bench.report(m)
    assert "| selfharm_set | 60 (20) |" in body and "never blocks" in body
    assert "| everyday posts, written after them | 60 |" in body
