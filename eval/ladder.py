"""The fusion ladder: text-only, image-only, late and concat heads from one config, scored by one evaluator.

Each rung is a full `moderation train` run (`eval.evaluate.train_and_evaluate`: the library's `train_run`
with evaluation injected) of the same config with only `head.fusion` changed (the frozen
embeddings are cached, so the rungs after the first train in seconds); the test-split PR-AUC and ROC-AUC per
class go into one table in BENCHMARKS.md.
"""

from __future__ import annotations

import json

from moderation import runfiles
from moderation.config import load_config

RUNGS = ("text_only", "image_only", "late", "concat")


def run_ladder(config_path: str, overrides: list[str], progress: bool = True,
               overwrite: bool = False) -> tuple[dict, list[str]]:
    """Train and evaluate every rung into `<output_dir of run.name-<fusion>>`; return {rung: test per-class
    metrics} and the categories. A rung's existing run is refused unless `overwrite` (`--overwrite`), which
    replaces only the run's own files, as `moderation train` does."""
    from eval.evaluate import train_and_evaluate

    results, categories = {}, []
    for fusion in RUNGS:
        config = load_config(config_path, [*overrides, f"head.fusion={fusion}"])
        config.run.name = f"{config.run.name}-{fusion}"
        run_dir = train_and_evaluate(config, progress=progress, overwrite=overwrite)
        report = json.loads((run_dir / runfiles.REPORT / "report.json").read_text())
        results[fusion] = report["results"]["test"]["model"]
        categories = report["categories"]
    return results, categories


def ladder_table(results: dict, categories: list[str]) -> str:
    def fmt(v):
        return "–" if v is None else f"{v:.3f}"

    head = "| category | test support (positives) | " + " | ".join(f"{r} PR-AUC / ROC-AUC" for r in results) + " |"
    lines = [head, "|" + "---|" * (len(results) + 2)]
    for cat in categories:
        first = next(iter(results.values()))[cat]
        if not first["support"]:
            continue
        cells = [f"{fmt(r[cat]['average_precision'])} / {fmt(r[cat]['roc_auc'])}" for r in results.values()]
        lines.append(f"| {cat} | {first['support']} ({first['positives']}) | " + " | ".join(cells) + " |")
    return "\n".join(lines)
