"""The retraining loop: reviewed labels + base data -> a candidate model -> a gate -> promotion (or not).

1. Merge exported review decisions (generic JSONL) into the base config as datasets that supersede
   duplicate texts (reviewer labels are newer); categories a reviewer did not decide stay unknown.
2. Train and evaluate a candidate into the registry (`runs/<version>`).
3. Score the current model and the candidate on the same held-out rows (the candidate config's test split),
   per class PR-AUC (average precision).
4. Promote only if no class drops by more than `margin` and the mean improves; write the comparison report
   (markdown + JSON) either way.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from eval.metrics import per_class_metrics
from moderation.config import Config, DatasetConfig
from moderation.registry import Registry

log = logging.getLogger(__name__)


@dataclass
class GateResult:
    promoted: bool
    reasons: list[str]
    old_version: str | None
    new_version: str
    per_class: dict[str, dict]  # category -> {"old", "new", "change", "support", "positives"}
    old_mean: float | None
    new_mean: float | None
    report: Path


def add_reviewed(config: Config, reviewed: list[Path]) -> Config:
    for i, path in enumerate(reviewed):
        config.datasets[f"reviewed_{i}" if len(reviewed) > 1 else "reviewed"] = DatasetConfig(
            loader="jsonl", path=str(Path(path).resolve()), supersedes_duplicates=True)
    return config


def score_rows(run_dir: Path, rows: dict, batch_size: int = 64) -> np.ndarray:
    """Fused scores (N, C) of a run on rows {"id", "text", "image"} (lists), in the run's category order."""
    from moderation.predict import Moderator

    moderator = Moderator(run_dir)
    posts = [{"id": str(i), "text": t, "image": im} for i, t, im in zip(rows["id"], rows["text"], rows["image"])]
    results = []
    for start in range(0, len(posts), batch_size):
        results.extend(moderator.score(posts[start:start + batch_size]))
    return np.array([[r["scores"][c] for c in moderator.categories] for r in results], np.float32)


def gate(old: dict, new: dict, categories: list[str], margin: float) -> tuple[bool, list[str], dict, float | None, float | None]:
    """Compare per-class metrics: no class may lose more than `margin` PR-AUC and the mean must improve."""
    per_class, reasons, olds, news = {}, [], [], []
    for c in categories:
        o, n = old[c]["average_precision"], new[c]["average_precision"]
        per_class[c] = {"old": o, "new": n, "change": None if o is None or n is None else n - o,
                        "support": new[c]["support"], "positives": new[c]["positives"]}
        if o is None or n is None:
            continue
        olds.append(o)
        news.append(n)
        if o - n > margin:
            reasons.append(f"{c}: PR-AUC fell {o - n:.4f} ({o:.4f} -> {n:.4f}), more than the margin {margin}")
    if not olds:
        return False, ["no class has held-out labels of both kinds: nothing to compare"], per_class, None, None
    old_mean, new_mean = float(np.mean(olds)), float(np.mean(news))
    if new_mean <= old_mean:
        reasons.append(f"mean PR-AUC did not improve ({old_mean:.4f} -> {new_mean:.4f})")
    return not reasons, reasons, per_class, old_mean, new_mean


def retrain(config: Config, reviewed: list[Path], registry: Registry, margin: float, progress: bool = True) -> GateResult:
    from eval.pipeline import train_and_evaluate
    from moderation.data.build import build_splits

    old_dir = registry.current_dir()
    config = add_reviewed(config, reviewed)
    version = f"{config.run.name}-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}"
    config.run.output_dir = str(registry.run_dir(version))
    new_dir = train_and_evaluate(config, progress, version=version)
    test = build_splits(config, only_eval=True)["test"]
    rows = test.select_columns(["id", "text", "image", "labels", "label_mask"]).to_dict()
    labels, mask = np.asarray(rows["labels"], np.float32), np.asarray(rows["label_mask"], bool)
    names = config.category_names
    new = per_class_metrics(labels, mask, score_rows(new_dir, rows), names)
    if old_dir is None:
        promoted, reasons, per_class, old_mean, new_mean = True, ["no current model: the first one is promoted"], \
            {c: {"old": None, "new": new[c]["average_precision"], "change": None, "support": new[c]["support"],
                 "positives": new[c]["positives"]} for c in names}, None, None
    else:
        old = per_class_metrics(labels, mask, score_rows(old_dir, rows), names)
        promoted, reasons, per_class, old_mean, new_mean = gate(old, new, names, margin)
    result = GateResult(promoted, reasons, old_dir.name if old_dir else None, version, per_class, old_mean,
                        new_mean, new_dir / "comparison.md")
    write_comparison(result, margin, len(rows["id"]), [str(p) for p in reviewed])
    if promoted:
        registry.promote(version, note="; ".join(reasons) or "gate passed")
    return result


def write_comparison(result: GateResult, margin: float, rows: int, reviewed: list[str]) -> None:
    fmt = lambda v, signed=False: "–" if v is None else (f"{v:+.4f}" if signed else f"{v:.4f}")
    verdict = "PROMOTED" if result.promoted else "REFUSED"
    lines = [f"# Model comparison: {result.new_version} vs {result.old_version or '(none)'}", "",
             f"**{verdict}.** Gate: no class may lose more than {margin} PR-AUC (average precision), and the mean "
             f"must improve. Both models scored the same {rows} held-out rows (the candidate config's test split).", "",
             *[f"- {r}" for r in result.reasons], "", f"Reviewed data merged: {', '.join(reviewed) or 'none'}", "",
             "| category | support (positives) | current | candidate | change |", "|---|---|---|---|---|"]
    for c, m in result.per_class.items():
        lines.append(f"| {c} | {m['support']} ({m['positives']}) | {fmt(m['old'])} | {fmt(m['new'])} | {fmt(m['change'], True)} |")
    lines += ["", f"Mean over classes with labels: current {fmt(result.old_mean)}, candidate {fmt(result.new_mean)}"]
    result.report.write_text("\n".join(lines) + "\n")
    payload = {k: (str(v) if isinstance(v, Path) else v) for k, v in result.__dict__.items()}
    result.report.with_suffix(".json").write_text(json.dumps({**payload, "margin": margin}, indent=2))
