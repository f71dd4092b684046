"""`moderation bench harmless`: the project's hand-written harmless posts and the generated probe, scored through
the serving path of one or more runs."""

from __future__ import annotations

from collections import Counter

from tests.synthetic import tiny_config, write_dataset


def test_hand_written_posts_are_distinct_and_never_trained_on():
    from eval.benchmarks.harmless import PARTS, load_posts
    from moderation.data.hard_negatives import generate

    posts = load_posts()
    assert set(posts) == set(PARTS)
    texts = [t for kinds in posts.values() for ts in kinds.values() for t in ts]
    assert not [t for t, n in Counter(t.lower() for t in texts).items() if n > 1]
    assert all(len(ts) >= 4 for kinds in posts.values() for ts in kinds.values())
    assert all(sum(map(len, kinds.values())) >= 60 for kinds in posts.values())
    training = {r["text"].lower().rstrip("?.!") for r in generate(3300, seed=0)}
    assert not training & {t.lower().rstrip("?.!") for t in texts}


def test_bench_counts_what_the_moderator_decides_and_keeps_it_for_the_model_card(tiny_bert, tmp_path):
    from eval.benchmarks import harmless as bench
    from eval.evaluate import evaluate_run, train_and_evaluate
    from moderation import runfiles
    from moderation.config import config_from_dict
    from moderation.moderator import Moderator

    train = write_dataset(tmp_path / "train.jsonl", n=200, seed=5)
    run = train_and_evaluate(config_from_dict(tiny_config(train, tiny_bert, tmp_path / "run", train={"epochs": 3},
                                                          run={"baseline": False})), progress=False)
    args = bench.build_parser().parse_args(["--run", str(run), "--run", str(run), "--probe-rows", "40",
                                            "--no-write"])
    m = bench.measure(args)
    assert len(m["runs"]) == 2 and m["runs"][0]["parts"] == m["runs"][1]["parts"]
    r = m["runs"][0]["parts"]
    assert list(r) == [*bench.PARTS, bench.PROBE] and r[bench.PROBE]["support"] == 40
    moderator = Moderator(run)
    for part, kinds in bench.load_posts().items():
        for kind, texts in kinds.items():  # one post at a time through `decide`, the service's call
            decided = [moderator.decide(t).decision.action.value for t in texts]
            assert r[part]["by_kind"][kind] == {"support": len(texts), "flagged": sum(a != "allow" for a in decided)}
        flagged = sum(k["flagged"] for k in r[part]["by_kind"].values())
        assert len(r[part]["examples"]) == flagged
        assert abs(r[part]["flagged"] - flagged / r[part]["support"]) < 1e-9
        assert all(e["classes"] for e in r[part]["examples"])  # a flag always names the class that raised it
    body = bench.report(m)
    assert "hand-written, after the templates (held out)" in body and "Flagged by" in body

    bench.run(bench.build_parser().parse_args(["--run", str(run), "--probe-rows", "20", "--no-write"]))
    kept = runfiles.read_json(run / runfiles.HARMLESS)  # the run's own figures, without the machine's path
    assert set(kept["parts"]) == {*bench.PARTS, bench.PROBE} and "run_dir" not in kept
    evaluate_run(run, progress=False)
    card = (run / runfiles.MODEL_CARD).read_text()
    assert "## Harmless posts with harm words" in card
    assert f"| hand-written, after the templates (held out) | {kept['parts']['written_after']['support']} |" in card
    # Flags measured at other thresholds (e.g. before `evaluate --thresholds-from` moved them) are left out.
    kept["thresholds"]["categories"]["toxicity"]["review"] = 0.123
    runfiles.write_json(run / runfiles.HARMLESS, kept)
    evaluate_run(run, progress=False)
    assert "## Harmless posts with harm words" not in (run / runfiles.MODEL_CARD).read_text()
