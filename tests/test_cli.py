"""The `moderation` command end to end on synthetic data and a tiny local model, and its error paths."""

import json
import subprocess
import sys

import pytest
import yaml

from moderation import runfiles
from moderation.cli import main, parse
from tests.synthetic import CATEGORIES, tiny_config, write_dataset


def write_config(tmp_path, tree) -> str:
    path = tmp_path / "config.yaml"
    path.write_text("# test config\n" + yaml.safe_dump(tree))
    return str(path)


@pytest.fixture(scope="module")
def trained_run(tiny_bert, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    data = write_dataset(tmp / "train.jsonl", n=300, seed=5)
    config = write_config(tmp, tiny_config(data, tiny_bert, tmp / "run"))
    assert main(["train", config, "-q", "train.epochs=25"]) == 0
    return tmp / "run", tmp


def test_train_writes_a_complete_run_directory(trained_run):
    run, _ = trained_run
    for name in (runfiles.CONFIG, runfiles.MODEL, runfiles.HEAD, runfiles.THRESHOLDS, runfiles.TRAIN_LOG,
                 runfiles.MODEL_CARD, "report/report.md", "report/report.json"):
        assert (run / name).is_file(), name
    assert list((run / "report").glob("pr_*.png"))
    assert (run / "predictions.npz").is_file()  # written by training, read by evaluation
    thresholds = runfiles.read_thresholds(run)
    assert set(thresholds.categories) == set(CATEGORIES)
    assert all(t.review <= t.block for t in thresholds.categories.values())
    report = (run / "report" / "report.md").read_text()
    assert "tfidf_baseline" in report and "PR-AUC" in report
    card = (run / runfiles.MODEL_CARD).read_text()
    assert "self_harm | zero-shot" in card
    assert "- self_harm: corpus_quantile; 1 seed phrase" in card  # tests.synthetic gives each class one, no twins
    assert yaml.safe_load((run / runfiles.CONFIG).read_text())["train"]["epochs"] == 25  # override saved
    assert not list(run.parent.glob(".run.partial-*"))


def test_train_refuses_to_overwrite_a_run_without_the_flag(trained_run, capsys):
    run, tmp = trained_run
    before = (run / runfiles.HEAD).read_bytes()
    assert main(["train", str(tmp / "config.yaml"), "-q", "train.epochs=1"]) == 2
    assert "overwrite" in capsys.readouterr().err
    assert (run / runfiles.HEAD).read_bytes() == before


def test_evaluate_rewrites_a_run_directory_from_its_predictions(trained_run, capsys):
    run, _ = trained_run
    (run / runfiles.MODEL_CARD).unlink()
    (run / runfiles.RELEASE_NOTES).write_text("Violence did not improve: its held-out sources have 121 positives.")
    assert main(["evaluate", "--run", str(run), "-q"]) == 0
    assert (run / runfiles.MODEL_CARD).is_file() and runfiles.read_thresholds(run)
    card = (run / runfiles.MODEL_CARD).read_text()  # the releasers' notes are in the card, marked as theirs
    assert "## Release notes" in card and "Violence did not improve: its held-out sources have 121" in card
    (run / runfiles.RELEASE_NOTES).unlink()
    capsys.readouterr()
    assert main(["evaluate"]) == 2  # no run and no data: the shipped model is never rewritten in place
    assert "--run DIR" in capsys.readouterr().err


def test_predict_writes_scores_for_every_row(trained_run, tmp_path):
    run, tmp = trained_run
    out = tmp_path / "pred.jsonl"
    assert main(["predict", "--run", str(run), "--data", str(tmp / "train.jsonl"), "--out", str(out), "-q"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 300 and rows[0]["id"] == "p0"
    assert set(rows[0]["scores"]) == set(CATEGORIES)
    assert all(0.0 <= v <= 1.0 for v in rows[0]["scores"].values())
    assert rows[0]["image_scores"] is None and rows[0]["text_scores"] is not None
    plain = tmp_path / "texts.txt"
    plain.write_text("hello cats\nthe park threatword today\n")
    assert main(["predict", "--run", str(run), "--data", str(plain), "--out", str(out), "-q"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows[1]["scores"]["violence"] > rows[0]["scores"]["violence"]


def test_evaluate_on_a_generic_file(trained_run, tmp_path):
    run, _ = trained_run
    held_out = write_dataset(tmp_path / "held_out.jsonl", n=150, seed=99)
    assert main(["evaluate", "--run", str(run), "--data", str(held_out), "--out", str(tmp_path / "ev"), "-q"]) == 0
    result = json.loads((tmp_path / "ev" / "report.json").read_text())
    text = json.dumps(result)
    assert "average_precision" in text
    assert (tmp_path / "ev" / "report.md").is_file()


def test_config_typo_exits_2_naming_the_key(tmp_path, capsys, tiny_bert):
    data = write_dataset(tmp_path / "d.jsonl", n=50)
    tree = tiny_config(data, tiny_bert, tmp_path / "run")
    tree["train"]["epoch"] = 3
    assert main(["train", write_config(tmp_path, tree)]) == 2
    assert "train.epoch: unknown key" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("bad_row, message", [
    ({"id": "x", "text": "cats", "labels": {"hate": 3}}, "labels.hate: value 3 is not 0 or 1"),
    ({"text": "cats"}, "missing key 'id'"),
])
def test_bad_dataset_rows_leave_no_run_directory(tmp_path, capsys, tiny_bert, bad_row, message):
    data = write_dataset(tmp_path / "d.jsonl", n=50)
    with data.open("a") as fh:
        fh.write(json.dumps(bad_row) + "\n")
    assert main(["train", write_config(tmp_path, tiny_config(data, tiny_bert, tmp_path / "run"))]) == 2
    err = capsys.readouterr().err
    assert message in err and "d.jsonl:51" in err
    assert not (tmp_path / "run").exists() and not list(tmp_path.glob(".run.partial-*"))


def test_unreadable_image_names_the_file(tmp_path, capsys, tiny_bert):
    data = write_dataset(tmp_path / "d.jsonl", n=60, images=True)
    (tmp_path / "images" / "p3.png").write_text("not an image")
    tree = tiny_config(data, tiny_bert, tmp_path / "run", image_encoder={"kind": "opennsfw"})
    assert main(["train", write_config(tmp_path, tree), "-q"]) == 2
    assert "p3.png" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_empty_dataset_after_filtering(tmp_path, capsys, tiny_bert):
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"id": "a", "text": "cats", "labels": {}}) + "\n")
    assert main(["train", write_config(tmp_path, tiny_config(data, tiny_bert, tmp_path / "run"))]) == 2
    assert "datasets.synthetic: no rows left with a known label" in capsys.readouterr().err


def test_check_config_and_help(capsys):
    assert main(["check-config", "configs/default.yaml"]) == 0
    assert "OK, training config" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0


def test_check_config_reports_every_training_error_at_once(tmp_path, capsys):
    tree = yaml.safe_load(open("configs/default.yaml"))
    tree["train"]["epoch"] = 3
    tree["head"]["fusion"] = "sideways"
    assert main(["check-config", write_config(tmp_path, tree)]) == 2
    err = capsys.readouterr().err
    assert "train.epoch" in err and "head.fusion" in err


def test_check_config_validates_serve_settings_files(tmp_path, capsys):
    good = tmp_path / "serve.yaml"
    good.write_text(yaml.safe_dump({"queue_url": "sqlite:///q.db", "max_batch_size": 16,
                                    "api_keys": [{"name": "ops", "roles": ["admin"], "key": "k" * 24}]}))
    assert main(["check-config", str(good)]) == 0
    assert "OK, serve settings" in capsys.readouterr().out
    bad = tmp_path / "serve-bad.yaml"
    bad.write_text(yaml.safe_dump({"queue_url": "sqlite:///q.db", "max_batch_size": -1, "prot": 80}))
    assert main(["check-config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "max_batch_size" in err and "prot" in err  # every problem named at once
    assert main(["check-config", "--serve", "configs/default.yaml"]) == 2  # forced: training keys are unknown there


def test_verbose_before_or_after_the_subcommand():
    assert parse(["-v", "promote", "m1", "--registry", "r"]).verbose
    assert parse(["promote", "m1", "--registry", "r", "-v"]).verbose
    assert not parse(["promote", "m1", "--registry", "r"]).verbose
    args = parse(["-v", "train", "c.yaml", "-q", "train.epochs=3", "--overwrite", "head.fusion=late"])
    assert args.overrides == ["train.epochs=3", "head.fusion=late"] and args.overwrite and args.verbose


def test_every_subcommand_has_its_own_module():
    import importlib

    from moderation import cli

    parser = cli.build_parser([])
    names = set(parser._subparsers._group_actions[0].choices)
    assert names == {name for name, _ in cli.COMMANDS} == {
        "check-config", "train", "evaluate", "predict", "serve", "score", "ladder", "audit", "live-quality",
        "monitor", "retrain", "promote", "bench", "release"}
    for _, module in cli.COMMANDS:  # each: add_parser(subparsers, parents, argv) and its handler
        assert callable(importlib.import_module(f"moderation.cli.{module}").add_parser), module


def test_importing_the_cli_imports_nothing_heavy():
    """`moderation --help` stays instant: the CLI package and its parser import no torch/transformers/ray/numpy."""
    code = ("import sys, moderation.cli as cli; cli.build_parser([]); "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'transformers', 'ray', 'numpy', "
            "'datasets', 'sklearn', 'eval', 'serve'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    help_text = subprocess.run([sys.executable, "-m", "moderation.cli", "--help"], capture_output=True, text=True,
                               check=True).stdout
    assert "check-config" in help_text and "--verbose" in help_text


def test_bench_serving_gets_the_app_moderation_serve_runs():
    args = parse(["bench", "serving", "--no-write"])
    assert args.app is None and args.handler.__module__ == "moderation.cli.bench"


def test_serve_hands_settings_and_overrides_to_the_library(monkeypatch, capsys):
    import serve.local

    calls = []
    monkeypatch.setattr(serve.local, "run_service", lambda *a: calls.append(a))
    assert main(["serve", "--config", "s.yaml", "--port", "8123", "--dev", "--num-cpus", "2"]) == 0
    [(path, overrides, num_cpus, on_ready)] = calls
    assert (path, num_cpus) == ("s.yaml", 2) and overrides == {"port": 8123, "auth": "disabled"}
    assert "API keys are NOT checked" in capsys.readouterr().err


def test_monitor_flags_a_shifted_class(trained_run, tmp_path, capsys):
    import numpy as np

    from moderation import runfiles as rf
    from moderation.policy import Action
    from serve.db import LoggedPrediction, open_prediction_log

    run, _ = trained_run
    version = rf.read_json(run / rf.MODEL)["version"]
    reference = np.load(run / "reference_scores.npz")
    assert reference  # written at training time
    rng = np.random.default_rng(0)
    url = f"sqlite:///{tmp_path / 'log.db'}"
    with open_prediction_log(url) as log:
        entries = []
        for i in range(300):  # violence shifted far up, the other classes as in the reference
            scores = {c: float(rng.uniform(0, 0.05)) for c in CATEGORIES}
            scores["violence"] = float(rng.uniform(0.9, 1.0))
            entries.append(LoggedPrediction(post_id=f"p{i}", model_version=version, scores=scores,
                                            action=Action.ALLOW.value))
        log.record(entries)
    out = tmp_path / "monitor"
    assert main(["monitor", "--run", str(run), "--log", url, "--out", str(out)]) == 3  # drift: non-zero for cron/CI
    printed = capsys.readouterr().out
    assert "FLAGGED violence" in printed and (out / "monitor.md").is_file()


def test_audit_and_live_quality_commands(trained_run, tmp_path, capsys, monkeypatch):
    run, _ = trained_run
    held_out = write_dataset(tmp_path / "held_out.jsonl", n=150, seed=98)
    assert main(["audit", "--run", str(run), "--data", str(held_out), "--out", str(tmp_path / "audit"),
                 "--bootstrap", "50", "-q"]) == 0
    assert (tmp_path / "audit" / "audit.md").is_file() and list((tmp_path / "audit").glob("*.png"))
    monkeypatch.chdir(tmp_path)  # without --out the report goes under the working directory, not the run
    assert main(["audit", "--run", str(run), "--data", str(held_out), "--bootstrap", "20", "-q"]) == 0
    assert (tmp_path / "audit-held_out" / "audit.md").is_file()
    queue_url = f"sqlite:///{tmp_path / 'q.db'}"
    from serve.db import open_queue

    open_queue(queue_url).close()  # an empty queue: the report says there is nothing decided yet
    assert main(["live-quality", "--queue", queue_url, "--run", str(run), "--out", str(tmp_path / "live.md")]) == 0
    assert (tmp_path / "live.md").is_file() and (tmp_path / "live.json").is_file()
    assert main(["live-quality", "--queue", queue_url, "--run", str(run), "--blocked", "hate"]) == 2
    assert "expected CATEGORY=COUNT" in capsys.readouterr().err


# -- CLI conventions (issue 12): table formats, exit codes, databases that must exist, hub access, quiet loads ----


def test_predict_reads_and_writes_csv_and_parquet_by_extension(trained_run, tmp_path, capfd):
    import csv

    import pyarrow as pa
    import pyarrow.parquet as pq

    run, _ = trained_run
    table = tmp_path / "posts.csv"
    # The header is never scored; `id` is optional (then the line number); other columns are ignored.
    table.write_text("text,source\nhello cats,forum\nthe park threatword today,forum\n")
    out = tmp_path / "scores.parquet"
    capfd.readouterr()
    assert main(["predict", "--run", str(run), "--data", str(table), "--out", str(out), "-q"]) == 0
    assert "Loading weights" not in capfd.readouterr().err  # no weight-loading bar on every model load
    rows = pq.read_table(out).to_pylist()
    assert [r["id"] for r in rows] == ["2", "3"] and all(0 <= r["score__violence"] <= 1 for r in rows)
    assert rows[0]["image_score__hate"] is None and rows[0]["error"] is None
    pq.write_table(pa.table({"id": ["a", "b"], "text": ["hello cats", "the park threatword today"]}), tmp_path / "in.parquet")
    assert main(["predict", "--run", str(run), "--data", str(tmp_path / "in.parquet"),
                 "--out", str(tmp_path / "out.csv"), "-q"]) == 0
    with open(tmp_path / "out.csv", newline="") as handle:
        written = list(csv.DictReader(handle))
    assert [r["id"] for r in written] == ["a", "b"] and 0 <= float(written[1]["score__violence"]) <= 1
    assert set(written[0]) >= {"id", "error", "ocr_text", "score__hate", "text_score__hate", "modality__hate"}


@pytest.mark.parametrize("content, message", [
    ("body,source\nhello,forum\n", "needs a 'text' and/or an 'image' column"),
    ("text,image\nhello,\n,\n", "line 3 (id '3') has neither text nor image"),
    ("id,text\na,hello\na,again\n", "line 3: duplicate id 'a'"),
])
def test_bad_tables_exit_2_naming_the_file_and_line(trained_run, tmp_path, capsys, content, message):
    run, _ = trained_run
    (tmp_path / "posts.csv").write_text(content)
    assert main(["predict", "--run", str(run), "--data", str(tmp_path / "posts.csv"),
                 "--out", str(tmp_path / "o.jsonl"), "-q"]) == 2
    assert message in capsys.readouterr().err
    assert main(["predict", "--run", str(run), "--data", str(tmp_path / "posts.csv"), "--out", str(tmp_path / "o.xlsx")]) == 2
    assert "output must end in one of ['.jsonl', '.csv', '.parquet']" in capsys.readouterr().err


def test_monitor_and_live_quality_refuse_a_database_that_does_not_exist(trained_run, tmp_path, capsys):
    run, _ = trained_run
    missing = tmp_path / "nowhere.db"
    assert main(["monitor", "--run", str(run), "--log", f"sqlite:///{missing}", "--out", str(tmp_path / "m")]) == 2
    assert "no such database file" in capsys.readouterr().err
    assert main(["live-quality", "--queue", f"sqlite:///{missing}", "--run", str(run)]) == 2
    assert "--queue" in capsys.readouterr().err
    assert not missing.exists()  # nothing was created


def test_monitor_exits_0_without_drift(trained_run, tmp_path):
    import numpy as np

    from moderation import runfiles as rf
    from serve.db import LoggedPrediction, open_prediction_log

    run, _ = trained_run
    version = rf.read_json(run / rf.MODEL)["version"]
    categories, reference = rf.read_reference_scores(run)
    url = f"sqlite:///{tmp_path / 'log.db'}"
    rows = reference[np.random.default_rng(1).integers(0, len(reference), 300)]  # drawn from the reference itself
    with open_prediction_log(url) as log:
        log.record([LoggedPrediction(post_id=f"p{i}", model_version=version, action="allow",
                                     scores={c: float(v) for c, v in zip(categories, row)}) for i, row in enumerate(rows)])
    assert main(["monitor", "--run", str(run), "--log", url, "--out", str(tmp_path / "m")]) == 0


def test_the_cli_leaves_hub_access_to_the_user_and_says_how_to_go_offline(tmp_path, monkeypatch, capsys):
    import os

    from moderation.config import TextEncoderConfig
    from moderation.encoders.loading import hub_hint
    from moderation.encoders.text import TextEncoder

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    main(["check-config", str(tmp_path / "none.yaml")])
    capsys.readouterr()
    assert "HF_HUB_OFFLINE" not in os.environ and "HF_DATASETS_OFFLINE" not in os.environ  # never forced
    assert "export HF_HUB_OFFLINE=1" in hub_hint("org/model")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert "unset HF_HUB_OFFLINE" in hub_hint("org/model")
    with pytest.raises(ValueError, match="HF_HUB_OFFLINE is set.*unset HF_HUB_OFFLINE"):
        TextEncoder(TextEncoderConfig(model="example-org/not-in-the-cache"))


def test_loading_a_model_prints_no_weight_loading_bar_and_keeps_the_users_setting(tiny_bert, capfd):
    from transformers.utils import logging as hf_logging

    from moderation.config import TextEncoderConfig
    from moderation.encoders.text import TextEncoder

    hf_logging.enable_progress_bar()  # as a user's program has it (the CLI turns it off for itself)
    capfd.readouterr()
    TextEncoder(TextEncoderConfig(model=str(tiny_bert)))
    assert "Loading weights" not in capfd.readouterr().err
    assert hf_logging.is_progress_bar_enabled()  # restored after the load
