"""The model audit: how a run's deployed thresholds behave on labelled data, written for a trust-and-safety lead.

Owns `audit(run_dir, data, out_dir)` (the `moderation audit` command) and the numbers behind it, per class:

- precision / recall / F1 at the block and review thresholds, with seeded bootstrap percentile intervals;
- PR curves with the two thresholds marked (`eval.plots`);
- calibration: expected calibration error and a reliability diagram;
- slices by source dataset and by targeted group (where the data names one), with the slices that are
  measurably worse than the whole called out;
- the false-positive rate on benign posts that mention identity groups versus those that do not
  (`eval.identity`).

The data is a generic JSONL file (rows may carry `source` and `target`), or the run's own validation or test
split rebuilt from its config. Scoring (torch) happens in `score_data`, through `Moderator.score_arrays` like
every other scoring; everything after it works on arrays, so `audit_scores` can be called with any scores.
The report shows numbers and pictures only, never a post. Run it as
`moderation audit [--run DIR] (--data FILE | --split validation|test) [--out DIR]` (default out:
`./audit-<data or split>` under the working directory).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from eval.audit_findings import calibration_summary, quality_at_thresholds, slice_quality, worse_slices
from eval.audit_plots import plot_identity_fpr, plot_reliability, plot_slices
from eval.audit_report import write_audit_report
from eval.identity import identity_false_positive_rates
from eval.metrics import threshold_dicts
from eval.plots import plot_pr_curves
from eval.report import _jsonable
from moderation import runfiles

log = logging.getLogger(__name__)

SPLIT_CHOICES = ("validation", "test")
AUDIT_PICTURES = ("pr_*.png", "reliability_*.png", "slices_*.png", "identity_fpr.png")


@dataclass
class AuditData:
    """Labelled posts to audit; `texts` are read for identity terms and never written anywhere."""

    ids: list[str]
    texts: list[str | None]
    images: list[str | None]
    labels: np.ndarray  # (N, C) 0/1 floats, 0 where unknown
    label_mask: np.ndarray  # (N, C) bool, True where the label is known
    sources: list[str]  # the dataset each post came from
    targets: list[list[str]]  # the group(s) each post names as its target; [] when none
    description: str  # what the data is, for the report
    split: str | None = None  # "validation" / "test" when this is the run's own split

    def __post_init__(self) -> None:
        n = len(self.ids)
        sizes = {"texts": len(self.texts), "images": len(self.images), "labels": len(self.labels),
                 "label_mask": len(self.label_mask), "sources": len(self.sources), "targets": len(self.targets)}
        bad = {k: v for k, v in sizes.items() if v != n}
        if bad:
            raise ValueError(f"AuditData fields must all have {n} rows (one per id), got {bad}")


def data_from_rows(rows: Sequence[Mapping], categories: Sequence[str], description: str,
                   default_source: str = "data") -> AuditData:
    """AuditData from raw generic rows (as `moderation.data.generic.read_jsonl_rows` returns them)."""
    from moderation.data.generic import label_field

    if not rows:
        raise ValueError(f"{description}: no rows to audit")
    values = [[row.get(label_field(c)) for c in categories] for row in rows]
    return AuditData(
        ids=[str(r["id"]) for r in rows], texts=[r.get("text") for r in rows], images=[r.get("image") for r in rows],
        labels=np.array([[float(v or 0) for v in vs] for vs in values], np.float64),
        label_mask=np.array([[v is not None for v in vs] for vs in values], bool),
        sources=[r.get("source") or default_source for r in rows], targets=[list(r.get("target") or []) for r in rows],
        description=description)


def data_from_split(run_dir: Path, split: str) -> AuditData:
    """The run's own `split`, rebuilt from its config.yaml (needs the datasets it names), targets included."""
    from moderation.data.build import build_splits

    if split not in SPLIT_CHOICES:
        raise ValueError(f"split {split!r} is not one of {list(SPLIT_CHOICES)}")
    config = runfiles.read_config(run_dir)
    part = build_splits(config, only_eval=True, keep_target=True)[split]
    if len(part) == 0:
        raise ValueError(f"the {split} split of {run_dir / runfiles.CONFIG} is empty")
    return AuditData(
        ids=list(part["id"]), texts=list(part["text"]), images=list(part["image"]),
        labels=np.asarray(part["labels"], np.float64), label_mask=np.asarray(part["label_mask"], bool),
        sources=list(part["source"]), targets=[list(t) for t in part["target"]],
        description=f"the {split} split of the run's own datasets ({len(part)} posts)", split=split)


def load_data(run_dir: Path, rows_or_data, categories: Sequence[str]) -> AuditData:
    """`rows_or_data`: AuditData, a list of raw generic rows, "validation"/"test" (the run's split) or a JSONL path."""
    if isinstance(rows_or_data, AuditData):
        return rows_or_data
    if isinstance(rows_or_data, (list, tuple)):
        return data_from_rows(rows_or_data, categories, f"{len(rows_or_data)} given posts")
    if isinstance(rows_or_data, str) and rows_or_data in SPLIT_CHOICES and not Path(rows_or_data).exists():
        return data_from_split(run_dir, rows_or_data)
    from moderation.data.generic import read_jsonl_rows

    path = Path(rows_or_data)
    rows = read_jsonl_rows(path, list(categories))
    return data_from_rows(rows, categories, f"{path.name} ({len(rows)} posts)", default_source=path.stem)


def score_data(run_dir: Path, data: AuditData, progress: bool = True) -> np.ndarray:
    """(N, C) fused scores of `data` by the run, through `Moderator.score_arrays` (the one scoring path)."""
    from moderation.moderator import Moderator

    posts = [{"id": i, "text": t, "image": im} for i, t, im in zip(data.ids, data.texts, data.images)]
    return Moderator(run_dir).score_arrays(posts, progress=progress).fused


def audit_results(data: AuditData, scores: np.ndarray, categories: Sequence[str], thresholds: Mapping[str, Mapping],
                  n_bootstrap: int = 1000, seed: int = 0) -> dict:
    """Every number of the audit (see the module docstring), as plain JSON-ready dicts."""
    thresholds = threshold_dicts(thresholds)
    rng = np.random.default_rng(seed)
    args = (data.labels, data.label_mask, scores)
    overall = quality_at_thresholds(*args, categories, thresholds, rng, n_bootstrap)
    by_source = slice_quality(*args, [[s] for s in data.sources], categories, thresholds, rng, n_bootstrap)
    named = np.array([bool(t) for t in data.targets])
    by_target, target_reference = {}, {}
    if named.any():
        by_target = slice_quality(*args, data.targets, categories, thresholds, rng, n_bootstrap)
        # Groups are compared with all posts that name a target (mostly the same datasets), not with everything.
        target_reference = quality_at_thresholds(data.labels[named], data.label_mask[named], scores[named],
                                                 categories, thresholds, rng, n_bootstrap)
    return {
        "overall": overall,
        "calibration": calibration_summary(*args, categories),
        "by_source": by_source,
        "by_target": by_target,
        "target_reference": target_reference,
        "worse_slices": (worse_slices(by_source, overall, "source")
                         + worse_slices(by_target, target_reference, "target")),
        "identity": identity_false_positive_rates(*args, data.texts, categories, thresholds, rng, n_bootstrap),
    }


def audit_scores(data: AuditData, scores: np.ndarray, categories: Sequence[str], thresholds: Mapping[str, Mapping],
                 out_dir, meta: Mapping, n_bootstrap: int = 1000, seed: int = 0) -> Path:
    """Compute the audit of `scores` on `data`, draw its pictures, write audit.md + audit.json; return audit.md."""
    scores = np.asarray(scores, np.float64)
    thresholds = threshold_dicts(thresholds)
    if scores.shape != data.labels.shape:
        raise ValueError(f"scores have shape {scores.shape}, the data's labels {data.labels.shape}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for pattern in AUDIT_PICTURES:  # an earlier audit's pictures would be linked by nothing; others' are left alone
        for old in out_dir.glob(pattern):
            old.unlink()
    results = audit_results(data, scores, categories, thresholds, n_bootstrap, seed)
    plots = {"pr": plot_pr_curves(data.labels, data.label_mask, {"model": scores}, categories, thresholds, out_dir),
             "reliability": [plot_reliability(results["calibration"][c], c, thresholds[c], out_dir)
                             for c in categories if results["calibration"].get(c)],
             "slices": plot_slices(results, categories, out_dir),
             "identity": plot_identity_fpr(results["identity"], categories, out_dir)}
    meta = {**meta, "data": data.description, "posts": len(data.ids), "n_bootstrap": n_bootstrap, "seed": seed}
    (out_dir / "audit.json").write_text(json.dumps(_jsonable({"meta": meta, "categories": list(categories),
                                                              "thresholds": thresholds, **results}),
                                                   indent=1, allow_nan=False) + "\n")
    return write_audit_report(out_dir, meta, categories, thresholds, results, plots)


def default_out(rows_or_data) -> Path:
    """`./audit-<split or data file name>` under the working directory (never inside the installed package)."""
    name = rows_or_data if isinstance(rows_or_data, str) and rows_or_data in SPLIT_CHOICES else None
    if name is None:
        name = Path(rows_or_data).stem if isinstance(rows_or_data, (str, Path)) else "data"
    return Path.cwd() / f"audit-{name}"


def audit(run_dir, rows_or_data, out_dir=None, n_bootstrap: int = 1000, seed: int = 0, progress: bool = True) -> Path:
    """Audit a run (None: the shipped default model) on labelled data; return the path of `out_dir/audit.md`.

    `rows_or_data`: a generic JSONL path, "validation" / "test" (the run's own split, rebuilt from its
    config), a list of raw generic rows, or an `AuditData`. `out_dir` defaults to `default_out(rows_or_data)`.
    """
    run_dir = runfiles.resolve_run_dir(run_dir)
    out_dir = Path(out_dir) if out_dir is not None else default_out(rows_or_data)
    meta = runfiles.read_json(run_dir / runfiles.MODEL)
    categories = list(meta["categories"])
    thresholds = runfiles.read_thresholds(run_dir)
    data = load_data(run_dir, rows_or_data, categories)
    log.info("auditing %s on %s", meta.get("version", run_dir.name), data.description)
    scores = score_data(run_dir, data, progress)
    # Thresholds are chosen on the validation split, so there they meet their targets by construction.
    about = {"model_version": meta.get("version", run_dir.name),
             "thresholds_tuned_on_this_data": data.split == "validation"}
    return audit_scores(data, scores, categories, thresholds, out_dir, about, n_bootstrap, seed)
