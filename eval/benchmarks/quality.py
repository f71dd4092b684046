"""Quality side by side: the shipped default model, the TF-IDF + logistic-regression baseline and
`alt-profanity-check`, per class, on every test split available here.

Test splits:
- the default config's own test split (the model and the baseline were trained on its train split), pooled
  and per source dataset;
- the test split of every other dataset in configs/all_datasets.yaml, which neither model trained on
  (bounded per dataset; rows whose text also occurs in the default training split are dropped).
alt-profanity-check carries its own model and gives one probability (profanity); it is mapped to `toxicity`
and, clearly labelled as that one score, reported against every class with known labels.
"""

from __future__ import annotations

import argparse
import logging
import time

import numpy as np

from eval.baseline import TfidfBaseline
from eval.benchmarks import common
from eval.metrics import per_class_metrics

log = logging.getLogger(__name__)

MODELS = ("default model", "TF-IDF baseline", "profanity-check (one score)")


def profanity_scorer():
    """alt-profanity-check's `predict_prob`, or None (with the reason logged) where it cannot load."""
    try:
        from profanity_check import predict_prob
    except Exception as exc:  # an sklearn pickle from another version fails here, with a clear message
        log.warning("alt-profanity-check unavailable: %s", exc)
        return None
    return predict_prob


def model_scores(model, encoder, cols: dict, num_classes: int, cache_dir, lexical_model=None) -> np.ndarray:
    """The shipped model's fused probabilities (N, C), text only, via the training path's embedding cache."""
    from moderation.features import featurize
    from moderation.scoring import run_model

    rows = {**cols, "image": [None] * len(cols["text"])}
    feats = featurize(rows, num_classes, encoder, None, cache_dir, progress=False, lexical_model=lexical_model)
    return run_model(model, feats).fused


def unseen_test_splits(default_config, train_texts: set[str], max_rows: int, seed: int) -> dict[str, dict]:
    """{dataset: columns} of the test split of each all_datasets.yaml dataset the default model never saw."""
    from moderation.data.build import load_labelled
    from moderation.data.splits import normalise_text

    config = common.load_config_checked(common.REPO / "configs" / "all_datasets.yaml")
    out = {}
    for name, ds in config.datasets.items():
        if name in default_config.datasets:
            continue
        test = load_labelled(name, ds, config).filter(lambda r: r["split"] == "test" and bool(r["text"]))
        test = test.filter(lambda r: normalise_text(r["text"]) not in train_texts)
        if len(test):
            out[name] = common.sample_split(test, max_rows, seed)
    return out


def metrics_by_model(cols: dict, scores: dict[str, np.ndarray], names: list[str], keep=None) -> dict[str, dict]:
    """{model: per-class metrics} on the rows `keep` selects (all rows when None)."""
    labels, mask = np.asarray(cols["labels"], np.float32), np.asarray(cols["label_mask"], bool)
    keep = np.ones(len(labels), bool) if keep is None else keep
    return {m: per_class_metrics(labels[keep], mask[keep], s[keep], names) for m, s in scores.items()}


def build_scorers(model, encoder, baseline, profanity, names: list[str], lexical_model=None) -> dict:
    """{model name: columns -> (N, C) probabilities} for the three models."""
    def default_model(cols, cache_dir=None):
        return model_scores(model, encoder, cols, len(names), cache_dir, lexical_model)

    out = {MODELS[0]: default_model, MODELS[1]: lambda cols, cache_dir=None: baseline.predict_proba(
        [t or "" for t in cols["text"]])}
    if profanity is not None:
        # One profanity probability per post, repeated in every class column (mapped to toxicity).
        out[MODELS[2]] = lambda cols, cache_dir=None: np.repeat(
            np.asarray(profanity([t or "" for t in cols["text"]]), np.float64)[:, None], len(names), axis=1)
    return out


def fit_baseline(train) -> TfidfBaseline:
    started = time.perf_counter()
    baseline = TfidfBaseline().fit([t or "" for t in train["text"]], np.asarray(train["labels"], np.float32),
                                   np.asarray(train["label_mask"], bool))
    log.info("TF-IDF baseline fitted on %d training rows in %.0f s", len(train), time.perf_counter() - started)
    return baseline


def measure(args) -> dict:
    from moderation import runfiles
    from moderation.data.splits import normalise_text
    from moderation.encoders.text import run_text_encoder
    from moderation.lexical import load_for_run
    from moderation.model import ModerationModel

    config, splits = common.load_splits()
    run_dir = runfiles.resolve_run_dir(None)
    model, meta = ModerationModel.load(run_dir)
    names = model.categories
    encoder = run_text_encoder(config.text_encoder, run_dir / runfiles.TEXT_ENCODER)
    scorers = build_scorers(model, encoder, fit_baseline(splits["train"]),
                            profanity_scorer(), names, load_for_run(run_dir, meta))
    # The default test split is embedded exactly as training embedded it, so its embedding cache applies.
    cache = common.REPO / config.run.cache_dir if config.run.cache_dir else None
    test = {c: splits["test"][c] for c in splits["test"].column_names}
    scores = {m: score(test, cache) for m, score in scorers.items()}
    sources = np.asarray(test["source"])
    per_source = {s: metrics_by_model(test, scores, names, sources == s) for s in sorted(set(sources))}
    train_texts = {normalise_text(t) for t in splits["train"]["text"] if t}
    unseen = {}
    for name, cols in unseen_test_splits(config, train_texts, args.max_rows, args.seed).items():
        unseen[name] = metrics_by_model(cols, {m: score(cols) for m, score in scorers.items()}, names)
        log.info("%s: %d test rows scored", name, len(cols["text"]))
    return {"names": names, "pooled": metrics_by_model(test, scores, names), "per_source": per_source,
            "unseen": unseen, "profanity": MODELS[2] in scorers, "rows": len(test["text"]),
            "train_rows": len(splits["train"])}


def _cell(metrics: dict) -> str | None:
    ap, roc = metrics["average_precision"], metrics["roc_auc"]
    return None if ap is None else f"{ap:.3f} / {roc:.3f}"


def class_rows(by_model: dict[str, dict], names: list[str], prefix: list | None = None) -> list[list]:
    """One row per class that has both a known positive and a known negative here."""
    rows = []
    first = next(iter(by_model.values()))
    for c in names:
        if first[c]["average_precision"] is None:
            continue
        rows.append([*(prefix or []), c, f"{first[c]['support']} ({first[c]['positives']})",
                     *[_cell(by_model[m][c]) for m in by_model]])
    return rows


def tally(tables: list[dict[str, dict]], names: list[str]) -> dict[str, int]:
    """In how many (split, class) cells each model has the highest PR-AUC."""
    wins: dict[str, int] = {}
    for by_model in tables:
        for c in names:
            aps = {m: v[c]["average_precision"] for m, v in by_model.items() if v[c]["average_precision"] is not None}
            if aps:
                best = max(aps, key=aps.get)
                wins[best] = wins.get(best, 0) + 1
    return wins


def mean_ap(by_model: dict[str, dict], names: list[str]) -> dict[str, float]:
    out = {}
    for m, metrics in by_model.items():
        aps = [metrics[c]["average_precision"] for c in names if metrics[c]["average_precision"] is not None]
        out[m] = float(np.mean(aps)) if aps else float("nan")
    return out


def report(m: dict, args) -> str:
    names, models = m["names"], list(m["pooled"])
    header = ["class", "support (positives)", *[f"{x} PR-AUC / ROC-AUC" for x in models]]
    pooled_mean = mean_ap(m["pooled"], names)
    lines = [f"Per class, PR-AUC (average precision) / ROC-AUC; thresholds play no part. The TF-IDF baseline is "
             f"refitted on the default config's {m['train_rows']} training rows. alt-profanity-check gives one "
             "profanity probability per post: it is the `toxicity` score, and the same single score is shown against "
             "every other class for comparison only." +
             ("" if m["profanity"] else " **alt-profanity-check could not be loaded here: its column is absent.**"),
             "", f"### Default config's test split, pooled ({m['rows']} rows)", "",
             common.md_table(header, class_rows(m["pooled"], names)), "",
             "Mean PR-AUC over the classes with labels: " +
             ", ".join(f"{x} {v:.3f}" for x, v in pooled_mean.items()) + ".", "",
             "### Default config's test split, per source dataset", "",
             common.md_table(["dataset", *header], [r for s, t in m["per_source"].items()
                                                    for r in class_rows(t, names, [s])]), ""]
    if m["unseen"]:
        lines += [f"### Test splits of datasets the default model never trained on (at most {args.max_rows} rows each, "
                  "rows whose text occurs in the default training split dropped)", "",
                  common.md_table(["dataset", *header], [r for s, t in m["unseen"].items()
                                                         for r in class_rows(t, names, [s])]), ""]
    wins = tally([*m["per_source"].values(), *m["unseen"].values()], names)
    lines.append("Highest PR-AUC per (dataset, class) cell: " +
                 ", ".join(f"{x} {wins.get(x, 0)}" for x in models) + ".")
    return "\n".join(lines)


def run(args) -> str:
    m = measure(args)
    return common.publish("quality", "Quality: default model vs TF-IDF baseline vs alt-profanity-check",
                          report(m, args), args)


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--max-rows", type=int, default=1000, help="rows per unseen dataset's test split")
    common.add_common_options(parser)
    return parser

