"""Promotion: reviewed labels + base data -> a candidate model -> a gate -> the registry's current model (or not).

1. Merge exported review decisions (generic JSONL, or the review API's export zip) into the base config as
   datasets that supersede duplicate texts (reviewer labels are newer); categories a reviewer did not
   decide stay unknown.
2. Train and evaluate a candidate into the registry (`runs/<version>`), the way `moderation train` does.
3. Score the current model and the candidate on the same held-out rows (the candidate config's test split)
   through `Moderator.score_arrays`, per class PR-AUC (average precision).
4. The gate. The candidate is promoted only when all of these hold:
   - blocking is safe: no class may block unless it is trained and its block threshold met the block
     precision target on validation (`Thresholds`), a class that model.json names zero-shot is marked
     zero-shot in thresholds.json, and a class that may block has a measured block precision at or above
     the target (a hand-edited or inconsistent thresholds.json is refused, not trusted);
   - no class that blocks in the current model loses its ability to block (its whole block volume would
     silently move to the review queue);
   - no class loses more than `margin` PR-AUC, and the mean PR-AUC improves.
   The comparison report (markdown + JSON) is written into the candidate's run directory either way.
"""

from __future__ import annotations

import json
import logging
import zipfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from eval.metrics import per_class_metrics
from moderation import runfiles
from moderation.config import Config, DatasetConfig
from moderation.data.sources import OWN_DATA
from moderation.policy import Scoring, Thresholds
from moderation.registry import Registry

log = logging.getLogger(__name__)

COMPARISON = "comparison.md"


@dataclass
class GateResult:
    promoted: bool
    reasons: list[str]
    old_version: str | None
    new_version: str
    per_class: dict[str, dict]  # category -> {"old", "new", "change", "support", "positives", "blocks_old", "blocks_new"}
    old_mean: float | None
    new_mean: float | None
    report: Path


def reviewed_files(paths: list[str | Path], registry_root: str | Path) -> list[Path]:
    """Review exports as JSONL paths; a zip from the review API is unpacked into `<registry>/reviewed/<name>/`."""
    files = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise FileNotFoundError(f"reviewed export {path}: no such file")
        if path.suffix == ".zip":
            target = Path(registry_root) / "reviewed" / path.stem
            with zipfile.ZipFile(path) as archive:
                if "reviewed.jsonl" not in archive.namelist():
                    raise ValueError(f"{path}: a review export zip holds reviewed.jsonl, got {archive.namelist()}")
                archive.extract("reviewed.jsonl", target)
            path = target / "reviewed.jsonl"
        files.append(path)
    return files


def add_reviewed(config: Config, reviewed: list[Path]) -> Config:
    for i, path in enumerate(reviewed):
        config.datasets[f"reviewed_{i}" if len(reviewed) > 1 else "reviewed"] = DatasetConfig(
            loader="jsonl", path=str(Path(path).resolve()), supersedes_duplicates=True, license=OWN_DATA)
    return config


def score_rows(run_dir: Path, rows: dict, batch_size: int = 64, progress: bool = False) -> np.ndarray:
    """Fused scores (N, C) of a run on rows {"id", "text", "image"} (lists), in the run's category order."""
    from moderation.moderator import Moderator

    posts = [{"id": str(i), "text": t, "image": im} for i, t, im in zip(rows["id"], rows["text"], rows["image"])]
    return Moderator(run_dir).score_arrays(posts, batch_size, progress).fused


def blocking_problems(run_dir: Path, previous: Thresholds | None = None) -> list[str]:
    """Why the run's thresholds would let a class block that must not (empty when they are safe).

    With `previous` (the current model's thresholds) also the classes that block now and would not."""
    thresholds = runfiles.read_thresholds(run_dir)
    zero_shot = set(runfiles.read_json(Path(run_dir) / runfiles.MODEL).get("zero_shot", {}))
    target = thresholds.targets.get("block_precision")
    problems = []
    for c, t in thresholds.categories.items():
        if c in zero_shot and t.scoring != Scoring.ZERO_SHOT:
            problems.append(f"{c}: scored zero-shot, but thresholds.json marks it {t.scoring.value} (it could block)")
        measured = t.measured.get("block_precision")
        if t.may_block and target is not None and (measured is None or measured < target):
            problems.append(f"{c}: may block, but its validation precision at block ({measured}) is below the "
                            f"target {target}")
    for c, old in (previous.categories.items() if previous else ()):
        if old.may_block and c in thresholds.categories and not thresholds[c].may_block:
            problems.append(f"{c}: blocks in the current model but would not in the candidate "
                            f"({thresholds[c].no_block_reason}); its blocks would all go to review")
    return problems


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
    """Train a candidate on the base data plus `reviewed`, gate it against the current model, promote if it passes."""
    from eval.evaluate import train_and_evaluate
    from moderation.data.build import build_splits

    old_dir = registry.current_dir()
    config = add_reviewed(config, reviewed)
    version = f"{config.run.name}-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}"
    new_dir = train_and_evaluate(config, out_dir=registry.run_dir(version), progress=progress, version=version)
    test = build_splits(config, only_eval=True)["test"]
    rows = test.select_columns(["id", "text", "image", "labels", "label_mask"]).to_dict()
    names = config.category_names
    labels = np.asarray(rows["labels"], np.float32).reshape(-1, len(names))
    mask = np.asarray(rows["label_mask"], bool).reshape(-1, len(names))
    new = per_class_metrics(labels, mask, score_rows(new_dir, rows, progress=progress), names)
    old_thresholds = runfiles.read_thresholds(old_dir) if old_dir is not None else None
    if old_dir is None:
        promoted, reasons, old_mean, new_mean = True, ["no current model: the first one is promoted"], None, None
        per_class = {c: {"old": None, "new": new[c]["average_precision"], "change": None, "support": new[c]["support"],
                         "positives": new[c]["positives"]} for c in names}
    else:
        old = per_class_metrics(labels, mask, score_rows(old_dir, rows, progress=progress), names)
        promoted, reasons, per_class, old_mean, new_mean = gate(old, new, names, margin)
    unsafe = blocking_problems(new_dir, old_thresholds)
    if unsafe:
        promoted, reasons = False, [*unsafe, *(r for r in reasons if not r.startswith("no current model"))]
    new_thresholds = runfiles.read_thresholds(new_dir)
    for c in names:
        per_class[c]["blocks_new"] = c in new_thresholds.categories and new_thresholds[c].may_block
        per_class[c]["blocks_old"] = (old_thresholds is not None and c in old_thresholds.categories
                                      and old_thresholds[c].may_block)
    result = GateResult(promoted, reasons, old_dir.name if old_dir else None, version, per_class, old_mean,
                        new_mean, new_dir / COMPARISON)
    write_comparison(result, margin, len(rows["id"]), [str(p) for p in reviewed])
    if promoted:
        registry.promote(version, note="; ".join(reasons) or "gate passed")
    return result


def write_comparison(result: GateResult, margin: float, rows: int, reviewed: list[str]) -> None:
    fmt = lambda v, signed=False: "–" if v is None else (f"{v:+.4f}" if signed else f"{v:.4f}")
    yes = lambda v: "yes" if v else "no"
    verdict = "PROMOTED" if result.promoted else "REFUSED"
    lines = [f"# Model comparison: {result.new_version} vs {result.old_version or '(none)'}", "",
             f"**{verdict}.** Gate: no class may block without a trained head and a block threshold that met its "
             "precision target on validation; no class that blocks now may lose that; no class may lose more than "
             f"{margin} PR-AUC (average precision), and the mean must improve. Both models scored the same {rows} "
             "held-out rows (the candidate config's test split).", "",
             *[f"- {r}" for r in result.reasons], "", f"Reviewed data merged: {', '.join(reviewed) or 'none'}", "",
             "| category | support (positives) | current | candidate | change | blocks (current / candidate) |",
             "|---|---|---|---|---|---|"]
    for c, m in result.per_class.items():
        lines.append(f"| {c} | {m['support']} ({m['positives']}) | {fmt(m['old'])} | {fmt(m['new'])} | "
                     f"{fmt(m['change'], True)} | {yes(m.get('blocks_old'))} / {yes(m.get('blocks_new'))} |")
    lines += ["", f"Mean over classes with labels: current {fmt(result.old_mean)}, candidate {fmt(result.new_mean)}"]
    result.report.write_text("\n".join(lines) + "\n")
    payload = {k: (str(v) if isinstance(v, Path) else v) for k, v in result.__dict__.items()}
    result.report.with_suffix(".json").write_text(json.dumps({**payload, "margin": margin}, indent=2))
