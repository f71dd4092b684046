"""The serving benchmark's section of BENCHMARKS.md: tables, the three targets, and the measured causes.

Pure formatting of what `eval.benchmarks.serving` measured (no Ray, no torch), so the target arithmetic is tested
on synthetic figures.
"""

from __future__ import annotations

import os

import numpy as np

from eval.benchmarks import common, harness

TARGET_CEILING = 0.80
TARGET_UNBATCHED = 4.0
TARGET_TAIL = 3.0


def merged_ladder(before: dict[int, dict], after: dict[int, dict]) -> dict[int, dict]:
    """In-process figures averaged over the runs before and after the service ran."""
    return {bs: {"before": before[bs]["rate"], "after": after[bs]["rate"],
                 "rate": (before[bs]["rate"] + after[bs]["rate"]) / 2,
                 "cpu_ms": (before[bs]["cpu_ms"] + after[bs]["cpu_ms"]) / 2} for bs in before}


def ceiling_at(ladder: dict[int, dict], batch: float) -> float:
    """In-process posts/s at a (mean) batch size, linearly interpolated between measured sizes."""
    sizes = sorted(ladder)
    return float(np.interp(batch, sizes, [ladder[s]["rate"] for s in sizes]))


def targets(rows: list[dict], ladder: dict[int, dict]) -> dict:
    """The three target ratios from one workload's load levels (one post per request) and its in-process ladder."""
    closed = [r for r in rows if r["mode"] == "closed" and r["per_request"] == 1]
    peak = max(closed, key=lambda r: r["posts_per_s"])
    batch = peak["mean_batch"] or 1.0
    low = next(r for r in rows if r["mode"] == "open" and r.get("fraction") != 0.5)
    half = next(r for r in rows if r["mode"] == "open" and r.get("fraction") == 0.5)
    ceiling = ceiling_at(ladder, batch)
    tail = half["p99_ms"] / low["p50_ms"] if half["p99_ms"] and low["p50_ms"] else None
    multi = [r for r in rows if r["per_request"] > 1]
    return {"peak": peak, "batch": batch, "ceiling": ceiling, "of_ceiling": peak["posts_per_s"] / ceiling,
            "of_max_batch": peak["posts_per_s"] / ladder[max(ladder)]["rate"], "max_batch": max(ladder),
            "of_unbatched": peak["posts_per_s"] / ladder[min(ladder)]["rate"], "low": low, "half": half,
            "tail": tail, "batching_gain": ladder[max(ladder)]["rate"] / ladder[min(ladder)]["rate"],
            "multi": [(r, r["posts_per_s"] / ceiling_at(ladder, r["mean_batch"] or 1.0)) for r in multi]}


def level_table(rows: list[dict]) -> str:
    body = []
    for r in rows:
        load = (f"{int(r['level'])} clients" if r["mode"] == "closed"
                else f"Poisson {r['level']:.1f}/s ({r['fraction']:.0%} of peak)")
        errors = ", ".join(f"{n}x {'transport' if s == 0 else s}" for s, n in sorted(r["errors"].items())) or "0"
        body.append([r["mode"], load, r["per_request"], f"{r['ok']} ({errors})", f"{r['posts_per_s']:.1f}",
                     common.fmt(r["p50_ms"], 1), common.fmt(r["p95_ms"], 1), common.fmt(r["p99_ms"], 1),
                     common.fmt(r["mean_batch"], 1)])
    return common.md_table(["loop", "load", "posts per request", "requests answered 2xx (errors)", "posts/s",
                            "p50 ms", "p95 ms", "p99 ms", "mean served batch"], body)


def ladder_table(ladder: dict[int, dict]) -> str:
    body = [[bs if bs > 1 else "1 (unbatched)", f"{v['before']:.1f}", f"{v['after']:.1f}", f"**{v['rate']:.1f}**",
             f"{v['cpu_ms']:.1f}"] for bs, v in sorted(ladder.items())]
    return common.md_table(["batch", "posts/s before", "posts/s after", "mean", "CPU ms per post"], body)


def cpu_text(peak: dict, ladder: dict[int, dict], batch: float) -> str:
    """Where the CPU went during the peak level, per request, against the model's own in-process cost."""
    cpu, n = peak["cpu"], max(peak["ok"], 1)
    used = sum(cpu.values())
    order = [*harness.ROLES.values(), harness.OTHER_RAY, harness.SELF]
    parts = ", ".join(f"{role} {1000 * cpu.get(role, 0.0) / n:.1f} ms ({cpu.get(role, 0.0) / used:.0%})"
                      for role in order if role in cpu)
    sizes = sorted(ladder)
    model_ms = float(np.interp(batch, sizes, [ladder[s]["cpu_ms"] for s in sizes])) * peak["per_request"]
    total_ms = 1000 * used / n
    busy = used / peak["wall_s"]
    text = (f"Measured cause — CPU per answered request at the peak level: {parts}; {total_ms:.1f} ms in all, "
            f"against {model_ms:.1f} CPU ms per post for the model alone in-process at batch {batch:.1f}. All of it "
            f"shares the same cores, so the served rate is bounded by about {model_ms / total_ms:.0%} of the "
            f"in-process one")
    text += (f"; these processes kept {busy:.2f} of the {os.cpu_count()} cores busy (the rest went to other "
             "tenants of the machine or sat idle between batches).")
    return text


def target_lines(t: dict) -> list[str]:
    peak = t["peak"]
    lines = [
        f"- Served peak {peak['posts_per_s']:.1f} posts/s ({int(peak['level'])} clients, one post per request, mean "
        f"batch {t['batch']:.1f}) is **{t['of_ceiling']:.0%}** of the in-process ceiling at that batch size "
        f"({t['ceiling']:.1f}/s; {t['of_max_batch']:.0%} of in-process at batch {t['max_batch']}). Target >= "
        f"{TARGET_CEILING:.0%}: {common.verdict(t['of_ceiling'] >= TARGET_CEILING)}."]
    lines += [f"  With {r['per_request']} posts per request ({int(r['level'])} clients): {r['posts_per_s']:.1f} "
              f"posts/s, {share:.0%} of the in-process ceiling at its mean batch {r['mean_batch'] or 0:.1f}."
              for r, share in t["multi"]]
    unbatched = (f"- Served peak is **{t['of_unbatched']:.1f}x** the unbatched in-process rate. "
                 f"Target >= {TARGET_UNBATCHED:.0f}x: {common.verdict(t['of_unbatched'] >= TARGET_UNBATCHED)}.")
    if t["batching_gain"] < TARGET_UNBATCHED:
        unbatched += (f" In-process, batch {t['max_batch']} itself is only {t['batching_gain']:.1f}x batch 1 on this "
                      "CPU, which bounds what any batching server can gain.")
    lines.append(unbatched)
    if t["tail"] is None:
        lines.append("- Tail target: no answered requests at one of the open-loop levels, so no ratio.")
    else:
        lines.append(
            f"- p99 at half of peak ({t['half']['p99_ms']:.1f} ms at {t['half']['level']:.1f}/s) is "
            f"**{t['tail']:.1f}x** the p50 at low load ({t['low']['p50_ms']:.1f} ms at {t['low']['level']:.1f}/s). "
            f"Target <= {TARGET_TAIL:.0f}x: {common.verdict(t['tail'] <= TARGET_TAIL)}.")
    return lines


TITLES = {"text": "Text-only: shipped default model, validation posts",
          "text+image": "Text+image: MiniLM + EfficientNet-Lite0, late fusion (untrained image branch: timing only), "
                        "meme images with their texts"}


def result_section(result: dict) -> list[str]:
    ladder = merged_ladder(result["before"], result["after"])
    t = targets(result["rows"], ladder)
    load = result["loadavg"]
    return [f"### {TITLES[result['workload']]}; {result['threads']} torch thread(s)", "",
            f"{result['posts']} distinct posts; machine load average {load[0]:.1f} before / {load[1]:.1f} after "
            "the served run (other tenants included).", "", level_table(result["rows"]), "",
            "In-process `Moderator.score`, same posts and threads, fastest of 2 passes, before and after the service "
            "ran:",
            "", ladder_table(ladder), "", *target_lines(t), "", cpu_text(t["peak"], ladder, t["batch"]), ""]


def report(results: list[dict], args) -> str:
    app = f"from `{args.app}`" if getattr(args, "app", None) else "as `moderation serve` builds it"
    lines = [f"Ray Serve app {app} on 127.0.0.1: one Scorer replica whose torch uses the thread count "
             f"named in each heading (the in-process runs use the same), max_batch_size {args.max_batch_size}, "
             f"batch_wait_timeout_s {args.batch_wait}, OMP_WAIT_POLICY {args.omp_wait_policy} in the Ray workers, "
             "API-key auth, SQLite review queue, random review off. Each load "
             f"level is bounded by {args.max_requests} requests and {args.max_seconds:.0f} s; the load generator "
             "(httpx + asyncio, this process) shares the machine's cores with the service. Open-loop latency counts "
             "from each request's scheduled arrival.", ""]
    for result in results:
        lines += result_section(result)
    lines.append(gpu_note())
    return "\n".join(lines)


def gpu_note() -> str:
    import shutil

    if shutil.which("nvidia-smi"):
        return "A GPU is present, but this benchmark serves on the CPU (use_gpu: no); GPU serving is not measured here."
    return "GPU: none on this machine, so the GPU serving benchmark was not run (no GPU was lent to this task)."
