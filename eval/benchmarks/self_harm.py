"""Self-harm, evaluation only: how a run's `self_harm` score does on the self-harm sets it never trained on.

No permissively licensed self-harm training data exists here, so the shipped model scores `self_harm`
zero-shot (similarity to the class's description and seed phrases, calibrated on the training corpus). The
self-harm sets in configs/all_datasets.yaml have no license: they may measure the shipped model, never train
it. For each of them (a set the run trained on is skipped; a seeded sample of at most `--max-rows` posts):
support, positives, PR-AUC (average precision) and ROC-AUC of the `self_harm` score, and at the run's deployed
thresholds the share of positives sent to review or blocked (recall) and the share of negatives flagged.
Posts are scored through `Moderator.score_arrays`, the serving path. The negatives differ by set (supportive
users, teen chatter, "suicidal" said of others or the news), so each set is reported on its own.

Then the everyday posts (`everyday_posts.json`, written by the project, none about self-harm): the share that
reaches self_harm's review threshold, each one a false flag. Short first-person chatter ("see you tonight")
is where a zero-shot score goes wrong most visibly; the sets above are mostly long posts.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np

from eval.benchmarks import common

log = logging.getLogger(__name__)
CATEGORY = "self_harm"
EVERYDAY_POSTS = Path(__file__).with_name("everyday_posts.json")
EVERYDAY_PARTS = {"before_twins": "everyday posts, written before the benign twins",
                  "after_twins": "everyday posts, written after them"}


def self_harm_sets(config, category: str = CATEGORY) -> dict:
    """{name: DatasetConfig} of the sets that may label `category`: a public set whose label_map maps it, or a
    generic JSONL file (its rows carry their own labels; one without a `category` label is skipped later)."""
    return {name: ds for name, ds in config.datasets.items() if category in ds.label_map or ds.loader == "jsonl"}


def score(moderator, texts: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Through the serving path: the posts' self_harm scores, whether each is flagged *for self_harm* (its
    score reaches self_harm's review threshold), and whether any class's action flags it (review or block)."""
    from moderation.policy import Action

    fused, actions, by_class = common.served_decisions(moderator, texts)
    column = moderator.categories.index(CATEGORY)
    return fused[:, column], by_class[:, column], actions != Action.ALLOW.value


def measure(args) -> dict:
    from sklearn.metrics import average_precision_score, roc_auc_score

    from moderation.data.build import load_labelled
    from moderation.moderator import Moderator

    moderator = Moderator(args.run)
    if CATEGORY not in moderator.categories:
        raise SystemExit(f"{moderator.run_dir}: the model has no {CATEGORY!r} category")
    thresholds = moderator.thresholds
    trained_on = set(moderator.config.datasets)
    everything = common.load_config_checked(args.sets_config)
    label_column = everything.category_names.index(CATEGORY)  # the sets' taxonomy may order classes differently
    out = {"version": moderator.version, "scoring": moderator.meta.get("zero_shot", {}).get(CATEGORY, "trained"),
           "review": thresholds[CATEGORY].review,
           "block": thresholds[CATEGORY].block, "may_block": thresholds[CATEGORY].may_block, "sets": {}, "everyday": {}}
    for name, ds in self_harm_sets(everything).items():
        if name in trained_on:
            log.info("%s: the run trained on it, skipped", name)
            continue
        rows = load_labelled(name, ds, everything).filter(lambda r: bool(r["text"]))
        cols = common.sample_split(rows, args.max_rows, args.seed)
        mask = np.asarray(cols["label_mask"], bool)[:, label_column]
        labels = np.asarray(cols["labels"], np.float32)[:, label_column][mask]
        texts = [t for t, m in zip(cols["text"], mask) if m]
        if not texts:
            log.info("%s: no %s labels, skipped", name, CATEGORY)
            continue
        log.info("%s: scoring %d posts", name, len(texts))
        scores, for_self_harm, flagged = score(moderator, texts)
        pos, neg = labels == 1, labels == 0
        both = pos.any() and neg.any()
        out["sets"][name] = {
            "support": int(len(labels)), "positives": int(pos.sum()),
            "average_precision": float(average_precision_score(labels, scores)) if both else None,
            "roc_auc": float(roc_auc_score(labels, scores)) if both else None,
            "positives_flagged_for_self_harm": float(for_self_harm[pos].mean()) if pos.any() else None,
            "negatives_flagged_for_self_harm": float(for_self_harm[neg].mean()) if neg.any() else None,
            "negatives_flagged_any_class": float(flagged[neg].mean()) if neg.any() else None}
    everyday = json.loads(EVERYDAY_POSTS.read_text())
    for part in EVERYDAY_PARTS:
        texts = everyday[part]
        _, for_self_harm, flagged = score(moderator, texts)
        out["everyday"][part] = {"support": len(texts), "flagged_for_self_harm": float(for_self_harm.mean()),
                                 "flagged_any_class": float(flagged.mean()),
                                 "examples": [t for t, f in zip(texts, for_self_harm) if f][:5]}
    return out


def report(m: dict) -> str:
    header = ["set", "support (positives)", "PR-AUC", "ROC-AUC", "positives flagged for self_harm",
              "negatives flagged for self_harm", "negatives flagged (any class)"]
    rows = [[name, f"{r['support']} ({r['positives']})", common.fmt(r["average_precision"]), common.fmt(r["roc_auc"]),
             common.pct(r["positives_flagged_for_self_harm"]), common.pct(r["negatives_flagged_for_self_harm"]),
             common.pct(r["negatives_flagged_any_class"])] for name, r in m["sets"].items()]
    blocks = "may block" if m["may_block"] else "never blocks (sends to review at most)"
    return "\n".join([
        f"Model `{m['version']}`: `self_harm` scored {m['scoring']}, review threshold {m['review']:.3f}, "
        f"{blocks}. Each self-harm set of configs/all_datasets.yaml (evaluation only: no license) the model did "
        "not train on; PR-AUC and ROC-AUC of the self_harm score where the set has positives and "
        "negatives; flagged = the self_harm score reaches its review threshold (or, last column, any class's "
        "action is review or block).", "", common.md_table(header, rows), "",
        "Everyday posts (`eval/benchmarks/everyday_posts.json`, written by the project, none about self-harm): "
        "the share flagged for self_harm is the share falsely sent to review for it.", "",
        common.md_table(["posts", "support", "flagged for self_harm", "flagged (any class)", "some flagged for self_harm"],
                        [[EVERYDAY_PARTS[part], r["support"], common.pct(r["flagged_for_self_harm"]),
                          common.pct(r["flagged_any_class"]), "; ".join(f'"{t}"' for t in r["examples"]) or "—"]
                         for part, r in m["everyday"].items()]), ""])


def run(args) -> str:
    m = measure(args)
    return common.publish("self-harm", "Self-harm: the zero-shot score on the self-harm sets (evaluation only)",
                          report(m), args)


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", help="run directory (default: the shipped model)")
    parser.add_argument("--max-rows", type=int, default=2000, help="posts per set (seeded sample)")
    parser.add_argument("--sets-config", default=str(common.REPO / "configs" / "all_datasets.yaml"),
                        help="the config whose datasets that label self_harm are measured")
    common.add_common_options(parser)
    return parser
