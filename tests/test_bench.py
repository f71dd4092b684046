"""The benchmark harness: floor and FLOP arithmetic, load-generator statistics, report tables. Fast, offline;
the one test that starts Ray is marked slow."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from eval.benchmarks import inference_variants, loadgen, quality, serving_report
from eval.benchmarks.flops import bert_flops, padded_flops, window_flops
from eval.metrics import per_class_metrics

NAMES = ["toxicity", "hate", "sexual"]


# --- compute floor ---------------------------------------------------------------------------------------

def test_matmul_rate_is_positive_and_a_small_workload_is_a_fraction_of_it():
    import torch

    from eval.benchmarks.compute_floor import Trial, interleave, matmul_rate

    assert matmul_rate("fp32", size=64, seconds=0.02) > 0
    a = torch.randn(32, 32)
    trial = Trial("toy", "fp32", 1, "fixed", 10, useful_flops=2 * 32**3 * 10, executed_flops=2 * 32**3 * 10,
                  run=lambda: [a @ a for _ in range(10)])
    floors = interleave([trial], rounds=2, floor_seconds=0.05)
    s = trial.summary()
    assert floors["fp32"] and all(f > 0 for f in floors["fp32"])
    assert 0 < s["share"] <= 1 and 0 < s["best_of_share"] <= 1 and s["items_per_s"] > 0


def test_bert_flops_match_a_hand_count():
    # T=10, H=32, I=64, L=2: per layer 10*(8*32*32 + 4*32*64) + 4*10*10*32 = 163840 + 12800; pooler 2*32*32.
    assert bert_flops(10, num_layers=2, hidden=32, intermediate=64, pooler=False) == 2 * (163840 + 12800)
    assert bert_flops(10, num_layers=2, hidden=32, intermediate=64) == 2 * (163840 + 12800) + 2048
    shape = {"num_layers": 2, "hidden": 32, "intermediate": 64, "pooler": False}
    assert window_flops([10, 10], shape).sum() == 2 * bert_flops(10, **shape)
    assert padded_flops([3, 10], shape) == 2 * bert_flops(10, **shape) > window_flops([3, 10], shape).sum()


def test_bert_flops_agree_with_torch_flop_counter_on_a_tiny_bert(tiny_bert):
    import torch
    from transformers import AutoModel

    from eval.benchmarks.flops import bert_shape, counted_flops

    model = AutoModel.from_pretrained(tiny_bert).eval()
    shape = bert_shape(model)
    batch, tokens = 3, 12
    ids = torch.randint(5, 20, (batch, tokens))
    seen = counted_flops(model, input_ids=ids, attention_mask=torch.ones_like(ids))
    # FlopCounterMode sees the matmuls but not the CPU flash-attention kernel: add the 4·T²·H per layer.
    attention = batch * shape["num_layers"] * 4 * tokens**2 * shape["hidden"]
    assert seen + attention == batch * bert_flops(tokens, **shape)


# --- load generator --------------------------------------------------------------------------------------

def test_summary_percentiles_and_throughput_on_synthetic_timings():
    latencies = np.linspace(0.001, 0.100, 100)  # 1..100 ms
    outcomes = [loadgen.Outcome(i * 0.01, float(lat), 200) for i, lat in enumerate(latencies)]
    outcomes += [loadgen.Outcome(1.0, 0.5, 503), loadgen.Outcome(1.0, 30.0, 0)]
    s = loadgen.summarise(outcomes, wall_s=2.0)
    ms = latencies * 1000
    assert s["ok"] == 100 and s["requests"] == 102 and s["errors"] == {503: 1, 0: 1}
    assert s["throughput_rps"] == pytest.approx(50.0)  # 2xx answers only
    for q in (50, 95, 99):
        assert s[f"p{q}_ms"] == pytest.approx(np.percentile(ms, q))
    assert loadgen.percentile([], 50) is None and loadgen.summarise([], 0.0)["throughput_rps"] == 0.0


def test_closed_loop_respects_its_bounds_and_keeps_concurrency():
    in_flight, peak = 0, 0

    async def send(payload):
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.01)
        in_flight -= 1
        return 200

    outcomes, wall = asyncio.run(loadgen.closed_loop(send, [{"a": 1}], concurrency=4, max_requests=20, max_seconds=10))
    assert len(outcomes) == 20 and peak == 4
    assert wall >= 5 * 0.01 and all(o.latency_s >= 0.009 for o in outcomes)
    outcomes, wall = asyncio.run(loadgen.closed_loop(send, [{"a": 1}], concurrency=2, max_requests=10_000,
                                                     max_seconds=0.1))
    assert 0 < len(outcomes) < 10_000  # the time bound stops it long before the request bound


def test_open_loop_sends_on_a_poisson_schedule_and_times_from_the_due_time():
    schedule = loadgen.poisson_schedule(rate=200, max_requests=2000, max_seconds=5, seed=1)
    assert schedule[0] == 0 and np.all(np.diff(schedule) >= 0)
    assert len(schedule) / schedule[-1] == pytest.approx(200, rel=0.1)
    assert len(loadgen.poisson_schedule(rate=200, max_requests=2000, max_seconds=0.5)) < 200

    in_flight, peak = 0, 0

    async def slow(payload):
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.05)
        in_flight -= 1
        return 200

    outcomes, wall = asyncio.run(loadgen.open_loop(slow, [{}], rate=100, max_requests=10, max_seconds=5))
    assert len(outcomes) == 10 and all(o.latency_s >= 0.049 for o in outcomes)
    assert peak > 1  # requests overlapped: each was sent when due, not after the previous answer


def test_http_sender_refuses_non_loopback_targets():
    with pytest.raises(ValueError, match="loopback"):
        loadgen.http_sender(None, "http://example.com/v1/moderate", {})


def test_payloads_and_batch_counters():
    from eval.benchmarks.serving import batch_counters, payloads

    bodies = payloads([{"text": "a"}, {"text": "b", "image": b"\x89PNG"}], 3, "t", per_request=2)
    ids = [p["id"] for body in bodies for p in body["posts"]]
    assert len(bodies) == 3 and len(set(ids)) == 6 and "image_base64" in bodies[0]["posts"][1]
    page = "# HELP x\nmoderation_batch_size_sum 40.0\nmoderation_batch_size_count 10.0\n"
    assert batch_counters(page) == (40.0, 10.0)


# --- reports from synthetic figures ----------------------------------------------------------------------

def _row(mode, level, posts_per_s, p50, p99, batch, fraction=None, per_request=1):
    return {"mode": mode, "level": level, "per_request": per_request, "ok": 100, "errors": {}, "wall_s": 1.0,
            "throughput_rps": posts_per_s / per_request, "posts_per_s": posts_per_s, "p50_ms": p50, "p95_ms": p99,
            "p99_ms": p99, "mean_batch": batch, "cpu": {"model replica (Scorer)": 0.5}, "fraction": fraction}


def test_serving_targets_arithmetic():
    rows = [_row("closed", 1, 20, 50, 60, 1.0), _row("closed", 32, 90, 300, 400, 16.0),
            _row("closed", 4, 100, 300, 500, 8.0, per_request=8),
            _row("open", 9, 9, 40, 80, 1.2, fraction=0.1), _row("open", 45, 45, 60, 100, 2.0, fraction=0.5)]
    ladder = {1: {"rate": 30.0, "cpu_ms": 60}, 8: {"rate": 80.0, "cpu_ms": 25}, 32: {"rate": 120.0, "cpu_ms": 16}}
    t = serving_report.targets(rows, ladder)
    assert t["peak"]["level"] == 32  # multi-post rows do not count as the one-post peak
    assert t["ceiling"] == pytest.approx(80 + (120 - 80) * 8 / 24)  # interpolated at batch 16
    assert t["of_unbatched"] == pytest.approx(3.0) and t["tail"] == pytest.approx(100 / 40)
    text = "\n".join(serving_report.target_lines(t))
    assert "Target >= 4x: **not met**" in text and "Target <= 3x: **met**" in text


def _fake_scores(seed, n=200, noise=0.3):
    rng = np.random.default_rng(seed)
    labels = (rng.random((n, len(NAMES))) < 0.3).astype(np.float32)
    mask = np.ones_like(labels, bool)
    mask[:, 2] = rng.random(n) < 0.5
    scores = np.clip(labels * 0.5 + rng.random((n, len(NAMES))) * noise, 0, 1)
    return labels, mask, scores


def test_quality_tables_from_fake_scores():
    labels, mask, good = _fake_scores(0)
    _, _, bad = _fake_scores(1, noise=2.0)
    by_model = {name: per_class_metrics(labels, mask, s, NAMES) for name, s in
                [(quality.MODELS[0], good), (quality.MODELS[1], bad), (quality.MODELS[2], np.clip(bad, 0, 1))]}
    rows = quality.class_rows(by_model, NAMES, ["set"])
    assert [r[1] for r in rows] == NAMES and rows[0][0] == "set"
    assert rows[0][3] == f"{by_model[quality.MODELS[0]]['toxicity']['average_precision']:.3f} / " \
                         f"{by_model[quality.MODELS[0]]['toxicity']['roc_auc']:.3f}"
    assert quality.tally([by_model], NAMES)[quality.MODELS[0]] == 3
    m = {"names": NAMES, "pooled": by_model, "per_source": {"set": by_model}, "unseen": {"other": by_model},
         "profanity": True, "rows": 200, "train_rows": 1000}
    text = quality.report(m, type("A", (), {"max_rows": 100})())
    assert "| set | toxicity |" in text and "| other | sexual |" in text and "default model 6" in text


def test_variant_winners_need_speed_and_unchanged_quality():
    changes = {"fp32 (reference)": {"a": 0.0}, "fast": {"a": 0.001}, "faster-worse": {"a": -0.01},
               "slow": {"a": 0.0}, "no-labels": {"a": None}}
    speed = {"fp32 (reference)": 100.0, "fast": 150.0, "faster-worse": 300.0, "slow": 105.0, "no-labels": 200.0}
    assert inference_variants.winners(speed, changes, "fp32 (reference)") == ["no-labels", "fast"]


# --- the real service, briefly -----------------------------------------------------------------------------

@pytest.mark.integration  # starts real Ray Serve
@pytest.mark.slow
def test_load_generator_against_the_real_app(multimodal_run, tmp_path):
    import httpx

    from eval.benchmarks import harness
    from eval.benchmarks.serving import measure_level, payloads
    from serve.app import build_app

    port = harness.free_port()
    settings, key = harness.bench_settings(str(multimodal_run), tmp_path, port, 8, 0.01, 8)
    args = type("A", (), {"max_requests": 24, "max_seconds": 10, "seed": 0})()
    posts = [{"text": f"cats park {i}"} for i in range(8)]

    async def levels():
        async with httpx.AsyncClient(timeout=30) as client:
            base = f"http://127.0.0.1:{port}"
            closed = await measure_level(client, base, key, payloads(posts, 24, "c"), "closed", 8, args)
            opened = await measure_level(client, base, key, payloads(posts, 24, "o"), "open", 20.0, args)
            return closed, opened

    with harness.local_ray(1, port):
        harness.deploy(build_app, settings)
        closed, opened = asyncio.run(levels())
    assert closed["ok"] == 24 and opened["ok"] > 0 and not closed["errors"]
    assert closed["mean_batch"] > 1 and harness.ROLES["Scorer"] in closed["cpu"]


def test_serving_benchmark_settings_admit_all_the_work_it_offers(tmp_path):
    """The serving benchmark measures batching and latency, not shedding: the ingress admits every request its
    clients keep in flight (32 clients, 8 captioned image posts each), and no request is too costly to score."""
    from eval.benchmarks import harness
    from serve.settings import ServeSettings

    settings, _ = harness.bench_settings(None, tmp_path, 8000, 32, 0.01, 32)
    s = ServeSettings(**settings)
    request = 8 * s.post_cost("caption " * 100, True)
    assert s.ingress_admission_limit >= 32 * request
    assert s.max_request_cost >= request and s.scorer_queue >= 32 * 8


def test_serving_benchmark_needs_an_app_builder_and_never_names_serve_itself():
    """eval never imports serve: the builder comes from the CLI (the app `moderation serve` runs) or --app."""
    from eval.benchmarks import serving

    args = serving.build_parser().parse_args([])
    assert args.app is None
    with pytest.raises(ValueError, match="--app package.module:function"):
        serving.run(args)


def test_finetune_speed_bench_runs_every_way_on_the_same_texts(tiny_bert, tmp_path):
    import yaml

    from eval.benchmarks import finetune_speed
    from tests.synthetic import tiny_config, write_dataset

    data = write_dataset(tmp_path / "d.jsonl", n=120, seed=3)
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_config(data, tiny_bert, tmp_path / "run",
                                                 train={"batch_size": 8, "finetune_tokens_per_batch": 64})))
    args = finetune_speed.build_parser().parse_args(["--config", str(config), "--texts", "40", "--rounds", "1", "--batch-size", "8",
                                                     "--no-write"])
    m = finetune_speed.measure(args)
    ways = {r["way"]: r for r in m["rows"]}
    assert m["texts"] == 40 and {"random batches, fp32", "length-bucketed, fp32"} <= set(ways)
    assert all(r["texts_per_second"] > 0 for r in m["rows"])
    assert ways["length-bucketed, fp32"]["padded_tokens"] < ways["random batches, fp32"]["padded_tokens"]
    assert "| random batches, fp32 |" in finetune_speed.report(m)


def test_a_section_is_replaced_in_place_and_stray_markers_stop_the_write(tmp_path):
    """A hand merge once left a stray closing marker of one section and an opener of another inside it; the
    next write of the second would have swallowed every table between the stray opener and its real closer."""
    from eval.benchmarks.sections import update_section

    path = tmp_path / "BENCHMARKS.md"
    update_section("alpha", "Alpha", "first", command="moderation bench alpha", path=path)
    update_section("beta", "Beta", "kept", command="moderation bench beta", path=path)
    update_section("alpha", "Alpha", "second", command="moderation bench alpha", path=path)
    text = path.read_text()
    assert "second" in text and "first" not in text and "kept" in text
    assert text.index("<!-- bench:alpha -->") < text.index("<!-- bench:beta -->")

    broken = text.replace("second\n", "second\n<!-- /bench:beta -->\n\n<!-- bench:beta -->\nstray\n")
    path.write_text(broken)
    with pytest.raises(ValueError, match=r"section 'beta' has its opening marker on line\(s\) \[\d+, \d+\]"):
        update_section("beta", "Beta", "new", command="moderation bench beta", path=path)
    assert path.read_text() == broken  # nothing written
