"""How much a lexical view would add on unseen sources, measured after the fact on a cross-source run.

For every fold of `moderation bench cross-source` under DIR (`runs/cross_source/<label>`): the TF-IDF
baseline (`eval.baseline.TfidfBaseline`, word and character n-grams, one masked logistic regression per class)
is fitted on exactly the fold's training rows, scores the held-out source, and its logits are blended with the
fold model's: (1 - w) * model + w * TF-IDF, per class, for each weight w. Classes the baseline cannot score
(zero-shot in that fold) keep the model's logit. Printed: per fold and mean over folds, mean PR-AUC and any-harm
PR-AUC for each w, and per class means; written to DIR/lexical_blend.json.

Rankings only: thresholds and decision rates need the blend inside the model (its validation split), which
this analysis does not have. The weight is chosen on the same folds it is reported on, so the best w is
optimistic; w = 0 reproduces the run's own figures.

    python -m eval.benchmarks.lexical_blend runs/cross_source/<label> [--weights 0 0.25 0.5 0.75 1] [--sources ...]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def logit(p: np.ndarray) -> np.ndarray:
    """Probabilities as logits, clipped so a score of exactly 0 or 1 stays finite."""
    from scipy.special import logit as _logit

    return _logit(np.clip(p.astype(np.float64), 1e-6, 1 - 1e-6))


def fold_blend(config_path: str, overrides: list[str], run_dir: Path, held_out: str, weights: list[float]) -> dict:
    from scipy.special import expit

    from eval.benchmarks.cross_source import fold_config, held_out_predictions, ranking_metrics
    from eval.benchmarks.quality import fit_baseline
    from moderation.data.build import build_splits

    config = fold_config(config_path, overrides, held_out, run_dir)
    splits = build_splits(config)
    baseline = fit_baseline(splits["train"])
    p = held_out_predictions(run_dir, held_out)
    text_of = {i: t or "" for split in splits.values() for i, s, t in zip(split["id"], split["source"], split["text"])
               if s == held_out}
    lexical = logit(baseline.predict_proba([text_of[i] for i in p.ids]))
    model = logit(p.fused)
    scorable = np.array([not isinstance(clf, float) for clf in baseline.classifiers])
    names = config.category_names
    out = {}
    for w in weights:
        blended = np.where(scorable, (1 - w) * model + w * lexical, model)
        m = ranking_metrics(p.labels, p.label_mask, expit(blended), names)
        out[f"{w:g}"] = {"per_class": {c: r["average_precision"] for c, r in m["per_class"].items()
                                       if r["average_precision"] is not None},
                         "mean": m["mean_average_precision"], "any_harm": m["any_harm_average_precision"]}
    return out


def main(argv=None) -> None:
    from moderation import runfiles

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("dir", type=Path, help="a cross-source folder, runs/cross_source/<label>")
    parser.add_argument("--weights", type=float, nargs="+", default=[0.0, 0.25, 0.5, 0.75, 1.0])
    parser.add_argument("--sources", nargs="+", help="only these held-out sources (default: every fold)")
    args = parser.parse_args(argv)
    summary = runfiles.read_json(args.dir / runfiles.CROSS_SOURCE_SUMMARY)
    results = {}
    for held_out in args.sources or summary["sources"]:
        started = time.perf_counter()
        results[held_out] = fold_blend(summary["config"], summary["overrides"], args.dir / held_out, held_out,
                                       args.weights)
        print(held_out, f"({time.perf_counter() - started:.0f} s):",
              ", ".join(f"w={w} {r['mean']:.3f} / {r['any_harm']:.3f}" for w, r in results[held_out].items()),
              flush=True)
    print("mean over held-out sources (mean PR-AUC / any-harm PR-AUC; per class):")
    for w in results[next(iter(results))]:
        per_class: dict[str, list[float]] = {}
        for r in results.values():
            for c, ap in r[w]["per_class"].items():
                per_class.setdefault(c, []).append(ap)
        print(f"  w={w}: {np.mean([r[w]['mean'] for r in results.values()]):.3f} / "
              f"{np.mean([r[w]['any_harm'] for r in results.values()]):.3f};",
              ", ".join(f"{c} {np.mean(a):.3f}" for c, a in per_class.items()))
    (args.dir / "lexical_blend.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
