"""Serving benchmark: the Ray Serve app under load on loopback, against the same model called in-process.

For text-only posts (the shipped default model, real validation texts) and text+image posts (real meme
images and their texts, through a timing-only text+image run), it measures:
- closed loop at several concurrencies: throughput, p50/p95/p99 latency, the served batch sizes (from the
  app's /metrics) and the CPU time of each process role per request;
- open loop (Poisson) at a low rate and at half of the peak closed-loop throughput;
- in-process, before and after the service runs: `Moderator.score` at a ladder of batch sizes (the ceiling
  at the batch sizes the service formed) and one post at a time (what naive serving gives).
Targets: served peak >= 80% of the in-process ceiling and >= 4x the unbatched rate; p99 at half of peak
load <= 3x the p50 at low load.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import logging
import os
import tempfile
import time
from pathlib import Path

from eval.benchmarks import common, harness, loadgen
from eval.benchmarks.serving_report import report

log = logging.getLogger(__name__)


def text_posts(n: int, seed: int) -> list[dict]:
    """Real validation posts of the default model's data: [{"text"}]."""
    _, splits = common.load_splits()
    rows = common.sample_split(splits["validation"], n, seed)
    return [{"text": t} for t in rows["text"] if t and t.strip()]


def meme_posts(n: int, seed: int) -> list[dict]:
    """Real meme posts (image bytes + their text) from ../shared/data/religious_hateful_memes."""
    from moderation.data.sources import LOADERS

    root = common.REPO.parent / "shared" / "data" / "religious_hateful_memes"
    if not root.exists():
        raise common.BenchmarkSkipped(f"text+image posts need {root} (public data lives outside the repo)")
    rows = common.sample_split(LOADERS["religious_hateful_memes"](root), n, seed)
    return [{"text": t or None, "image": Path(p).read_bytes()} for t, p in zip(rows["text"], rows["image"]) if p]


def payloads(posts: list[dict], n: int, tag: str, per_request: int = 1) -> list[dict]:
    """`n` request bodies of `per_request` posts cycling over `posts`; post ids are unique (the queue keys on them)."""
    out = []
    for i in range(n):
        body = []
        for j in range(per_request):
            post = posts[(i * per_request + j) % len(posts)]
            item = {"id": f"{tag}-{i}-{j}", "text": post.get("text")}
            if post.get("image") is not None:
                item["image_base64"] = base64.b64encode(post["image"]).decode()
            body.append(item)
        out.append({"posts": body})
    return out


def in_process(run_dir: str | None, posts: list[dict], batch_sizes: list[int], max_posts: int,
               repeats: int = 2) -> dict[int, dict]:
    """{batch size: {"rate": posts/s, "cpu_ms": CPU ms per post}} of `Moderator.score` (1 = unbatched).

    Each size is timed `repeats` times and the fastest kept: other tenants of a shared machine only slow a
    pass down, never speed it up."""
    from moderation import Moderator

    moderator = Moderator(run_dir)
    sample = [{"id": str(i), **p} for i, p in enumerate(posts[:max_posts])]
    moderator.score(sample[:8])  # warm-up
    rates = {}
    for bs in batch_sizes:
        n = len(sample) if bs > 1 else min(len(sample), max(32, len(sample) // 2))  # bound the slow unbatched pass
        for _ in range(repeats):
            start, cpu = time.perf_counter(), time.process_time()
            for s in range(0, n, bs):
                moderator.score(sample[s:min(s + bs, n)])
            rate = n / (time.perf_counter() - start)
            if rate > rates.get(bs, {}).get("rate", 0.0):
                rates[bs] = {"rate": rate, "cpu_ms": 1000 * (time.process_time() - cpu) / n}
    return rates


def batch_counters(text: str) -> tuple[float, float]:
    """(sum, count) of the app's moderation_batch_size histogram in a /metrics page."""
    values = {}
    for line in text.splitlines():
        for key in ("moderation_batch_size_sum", "moderation_batch_size_count"):
            if line.startswith(key + " "):
                values[key] = float(line.split()[-1])
    return values.get("moderation_batch_size_sum", 0.0), values.get("moderation_batch_size_count", 0.0)


async def measure_level(client, base: str, key: str, bodies: list[dict], mode: str, level: float, args) -> dict:
    """One load level: outcomes summarised, mean served batch size and CPU per role over the same window."""
    send = loadgen.http_sender(client, f"{base}/v1/moderate", {"Authorization": f"Bearer {key}"})
    meter = harness.CpuMeter()
    before_batches = batch_counters((await client.get(f"{base}/metrics")).text)
    before_cpu = meter.snapshot()
    if mode == "closed":
        outcomes, wall = await loadgen.closed_loop(send, bodies, int(level), args.max_requests, args.max_seconds)
    else:
        outcomes, wall = await loadgen.open_loop(send, bodies, level, args.max_requests, args.max_seconds, args.seed)
    cpu = harness.CpuMeter.delta(before_cpu, meter.snapshot())
    after_batches = batch_counters((await client.get(f"{base}/metrics")).text)
    scored = after_batches[1] - before_batches[1]
    summary = loadgen.summarise(outcomes, wall)
    per_request = len(bodies[0]["posts"])
    log.info("%s %s x%d: %.1f req/s, p50 %s ms, p99 %s ms, errors %s", mode, level, per_request,
             summary["throughput_rps"], common.fmt(summary["p50_ms"], 1), common.fmt(summary["p99_ms"], 1),
             summary["errors"])
    return {"mode": mode, "level": level, "per_request": per_request, **summary, "cpu": cpu,
            "posts_per_s": summary["throughput_rps"] * per_request,
            "mean_batch": (after_batches[0] - before_batches[0]) / scored if scored else None}


async def sweep(base: str, key: str, posts: list[dict], concurrencies: list[int], args) -> list[dict]:
    """Warm-up; closed loop at each concurrency (one post per request), then with several posts per request
    at the same number of posts in flight; open loop at low load and at half of the one-post peak."""
    import httpx

    width = max(concurrencies) * 2
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=width, max_keepalive_connections=width),
                                 timeout=args.request_timeout) as client:
        warm = loadgen.http_sender(client, f"{base}/v1/moderate", {"Authorization": f"Bearer {key}"})
        await loadgen.closed_loop(warm, payloads(posts, 32, "warm"), 8, 32, 60)
        rows = []
        for c in concurrencies:
            bodies = payloads(posts, args.max_requests, f"c{c}")
            rows.append(await measure_level(client, base, key, bodies, "closed", c, args))
        peak = max(r["posts_per_s"] for r in rows)
        for k in args.posts_per_request:
            bodies = payloads(posts, args.max_requests, f"k{k}", k)
            rows.append(await measure_level(client, base, key, bodies, "closed", max(1, max(concurrencies) // k), args))
        for fraction in (args.low_load, 0.5):
            bodies = payloads(posts, args.max_requests, f"o{fraction}")
            row = await measure_level(client, base, key, bodies, "open", max(0.5, fraction * peak), args)
            rows.append({**row, "fraction": fraction})
    return rows


def measure_workload(build_app, name: str, posts: list[dict], run_dir: str | None, threads: int, tmp: Path,
                     args) -> dict:
    """In-process ladder, the served sweep, the ladder again: one workload at one thread count."""
    import torch

    torch.set_num_threads(threads)
    text = name == "text"
    ladder, limit = (args.ladder, args.inprocess_posts) if text else (args.image_ladder, args.image_inprocess_posts)
    before = in_process(run_dir, posts, ladder, limit)
    port = harness.free_port()
    load_before = os.getloadavg()[0]
    queue_dir = tmp / f"queue-{name}-{threads}"  # a fresh queue per measurement: post ids repeat across them
    queue_dir.mkdir()
    with harness.local_ray(threads, port, None if args.omp_wait_policy == "default" else args.omp_wait_policy):
        settings, key = harness.bench_settings(run_dir, queue_dir, port, args.max_batch_size, args.batch_wait,
                                               max(args.concurrency))
        harness.deploy(build_app, settings)
        rows = asyncio.run(sweep(f"http://127.0.0.1:{port}", key, posts,
                                 args.concurrency if text else args.image_concurrency, args))
    after = in_process(run_dir, posts, ladder, limit)
    return {"workload": name, "posts": len(posts), "threads": threads, "rows": rows, "before": before,
            "after": after, "loadavg": (load_before, os.getloadavg()[0])}


def run(args, build_app=None) -> str:
    """Measure both workloads and write the section; `build_app` is the Serve app builder (settings -> app)."""
    if build_app is None:
        if not getattr(args, "app", None):
            raise ValueError("serving benchmark: no Serve app builder "
                             "(pass build_app, or --app package.module:function)")
        build_app = harness.resolve_app_builder(args.app)
    thread_counts = args.threads or sorted({os.cpu_count(), 1}, reverse=True)
    text = text_posts(args.posts, args.seed)
    images = None if args.text_only else meme_posts(args.image_posts, args.seed)
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp:
        for threads in thread_counts:
            results.append(measure_workload(build_app, "text", text, None, threads, Path(tmp), args))
        if images:
            run_dir = str(harness.speed_only_multimodal_run(Path(tmp) / "text-image-run"))
            results.append(measure_workload(build_app, "text+image", images, run_dir, thread_counts[0], Path(tmp), args))
    return common.publish("serving", "Serving: Ray Serve under load vs in-process ceiling and unbatched",
                          report(results, args), args)


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--app", help="another Serve app builder, as package.module:function "
                                      "(default: the app `moderation serve` runs)")
    parser.add_argument("--posts", type=int, default=1000, help="validation posts the text requests cycle over")
    parser.add_argument("--image-posts", type=int, default=200, help="meme posts the text+image requests cycle over")
    parser.add_argument("--text-only", action="store_true", help="skip the text+image workload")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32], help="closed-loop clients (text)")
    parser.add_argument("--image-concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--low-load", type=float, default=0.1, help="low load, as a fraction of peak throughput")
    parser.add_argument("--max-requests", type=int, default=400, help="bound per load level")
    parser.add_argument("--max-seconds", type=float, default=10.0, help="bound per load level (sending time)")
    parser.add_argument("--request-timeout", type=float, default=30.0)
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--batch-wait", type=float, default=0.01, help="batch_wait_timeout_s")
    parser.add_argument("--threads", type=int, nargs="+",
                        help="torch threads, in-process and in the replica; text is measured at each "
                             "(default: all cores, then 1); text+image at the first")
    parser.add_argument("--omp-wait-policy", default="PASSIVE", choices=["PASSIVE", "ACTIVE", "default"],
                        help="OMP_WAIT_POLICY of the Ray workers (default PASSIVE: idle threads sleep)")
    parser.add_argument("--posts-per-request", type=int, nargs="*", default=[8],
                        help="also measure requests carrying this many posts, same posts in flight")
    parser.add_argument("--ladder", type=int, nargs="+", default=[1, 4, 8, 16, 32], help="in-process batch sizes (text)")
    parser.add_argument("--image-ladder", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--inprocess-posts", type=int, default=192)
    parser.add_argument("--image-inprocess-posts", type=int, default=64)
    common.add_common_options(parser)
    return parser

