"""Pictures in a model that learned from text only: caption vs picture vs both, on the meme sets.

The shipped model has no permissively licensed image training data, so it scores a picture by the text read
from it (OCR through the trained text head) and open_nsfw for sexual content (`head.image_branch:
text_head`). This benchmark measures that on the two meme sets, which have no license and so are used here
for evaluation only (never to train the shipped head):

- caption: the meme's own transcribed text, through the text head (what the model scored before pictures);
- picture: the image alone, caption removed: what OCR reads in it, through the same head;
- max and noisy-OR: the two rules for combining caption and picture evidence per class. The rule is chosen
  on the validation split of `configs/memes.yaml` (higher mean PR-AUC) and reported on its test split.

It also reports how often OCR reads something, and OCR's cost per image on this machine.
"""

from __future__ import annotations

import argparse
import logging
import time

import numpy as np

from eval.benchmarks import common

log = logging.getLogger(__name__)

MEMES_CONFIG = common.REPO / "configs" / "memes.yaml"
RULES = ("max", "noisy_or")


def combine(caption: np.ndarray, picture: np.ndarray, rule: str) -> np.ndarray:
    """The fused probability a text_head model gives under `rule`: `moderation.model.combine_evidence` itself,
    applied to the two probabilities' logits.

    >>> combine(np.array([0.5]), np.array([0.5]), "noisy_or").round(4)
    array([0.75])
    """
    import torch

    from moderation.model import combine_evidence

    logit = lambda p: torch.logit(torch.as_tensor(p, dtype=torch.float64), eps=1e-7)
    return torch.sigmoid(combine_evidence(logit(caption), logit(picture), rule)).numpy()


def _split_scores(moderator, rows: dict, cache_dir: str) -> dict:
    """Caption-only and picture-only fused scores (N, C) for one split, embeddings and OCR cached."""
    from moderation.features import featurize
    from moderation.scoring import run_model

    n = len(rows["text"])
    common_args = dict(num_classes=len(moderator.categories), text_encoder=moderator.text_encoder, cache_dir=cache_dir,
                       lexical_model=moderator.lexical_model)
    caption = featurize({"text": rows["text"], "image": [None] * n, "source": rows["source"]},
                        image_encoder=None, **common_args)
    picture = featurize({"text": [None] * n, "image": rows["image"], "source": rows["source"]},
                        image_encoder=moderator.image_encoder, ocr_reader=moderator.ocr_reader,
                        ocr_as_image_features=moderator.meta.get("image_branch", "trained") == "trained",
                        progress=True, **common_args)
    return {"caption": run_model(moderator.model, caption).fused, "picture": run_model(moderator.model, picture).fused,
            "read": np.array([bool(t.strip()) for t in picture.ocr_text]) if picture.ocr_text else np.zeros(n, bool)}


def _cost_per_image(moderator, images: list[str], repeats: int = 2) -> float:
    """Seconds per image-only post through `Moderator.score_arrays` (decode, OCR, open_nsfw, text encoder,
    head; no cache), one post at a time as a low-load service sees them; the faster of `repeats` passes."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        for image in images:
            moderator.score_arrays([{"image": image}])
        best = min(best, (time.perf_counter() - started) / max(len(images), 1))
    return best


def _metrics(label: np.ndarray, score: np.ndarray) -> dict:
    from sklearn.metrics import average_precision_score, roc_auc_score

    return {"pr_auc": float(average_precision_score(label, score)), "roc_auc": float(roc_auc_score(label, score))}


def measure(args) -> dict:
    from moderation import Moderator
    from moderation.data.build import build_splits

    moderator = Moderator(args.run)
    if moderator.ocr_reader is None:
        raise common.BenchmarkSkipped(f"model {moderator.version} reads no text in pictures (image_encoder.ocr off)")
    config = common.load_config_checked(MEMES_CONFIG)
    splits = build_splits(config)
    out = {"model": moderator.version, "splits": {}, "shipped_rule": moderator.meta.get("caption_picture_rule")}
    for split in ("validation", "test"):
        rows = splits[split].select_columns(["text", "image", "source", "labels", "label_mask"]).to_dict()
        scores = _split_scores(moderator, rows, config.run.cache_dir)
        labels, mask = np.asarray(rows["labels"]), np.asarray(rows["label_mask"], bool)
        sources = np.asarray(rows["source"])
        cells = []
        for j, category in enumerate(config.category_names):
            k = moderator.categories.index(category)
            for source in sorted(set(sources)):
                keep = mask[:, j] & (sources == source)
                y = labels[keep, j]
                if not keep.any() or y.min() == y.max():
                    continue
                cap, pic = scores["caption"][keep, k], scores["picture"][keep, k]
                variants = {"caption": cap, "picture": pic, **{r: combine(cap, pic, r) for r in RULES}}
                cells.append({"source": source, "category": category, "support": int(keep.sum()),
                              "positives": int(y.sum()), "read": float(scores["read"][keep].mean()),
                              **{v: _metrics(y, s) for v, s in variants.items()}})
        out["splits"][split] = {"cells": cells, "images": len(rows["image"])}
    images = [p for p in splits["test"]["image"] if p][: args.cost_images]
    out["seconds_per_image"] = _cost_per_image(moderator, images)
    out["cost_images"] = len(images)
    val = out["splits"]["validation"]["cells"]
    out["chosen_rule"] = max(RULES, key=lambda r: np.mean([c[r]["pr_auc"] for c in val]) if val else 0.0)
    return out


def report(m: dict, args) -> str:
    test = m["splits"]["test"]
    header = ["source", "class", "support (positives)", "pictures with text read", "caption PR-AUC / ROC-AUC",
              "picture alone", "max", "noisy-OR"]
    cell = lambda c, v: f"{c[v]['pr_auc']:.3f} / {c[v]['roc_auc']:.3f}"
    rows = [[c["source"], c["category"], f"{c['support']} ({c['positives']})", common.pct(c["read"]),
             cell(c, "caption"), cell(c, "picture"), cell(c, "max"), cell(c, "noisy_or")] for c in test["cells"]]
    val_means = {r: np.mean([c[r]["pr_auc"] for c in m["splits"]["validation"]["cells"]]) for r in RULES}
    lines = [f"Model `{m['model']}` (text head trained on text only; pictures scored by their OCR text and "
             "open_nsfw). Meme sets from `configs/memes.yaml`, evaluation only (no license: never trained on). "
             "Test split, per source and class:", "", common.md_table(header, rows), "",
             f"Rule for combining caption and picture evidence, chosen on the validation split by mean PR-AUC: "
             f"**{m['chosen_rule']}** (validation: " + ", ".join(f"{r} {v:.3f}" for r, v in val_means.items()) + "); "
             f"the model combines by `{m['shipped_rule']}` (`head.caption_picture_rule`)"
             + ("." if m["shipped_rule"] == m["chosen_rule"] else
                f", {val_means[m['shipped_rule']] - val_means[m['chosen_rule']]:+.4f} mean PR-AUC against the "
                "chosen rule here."),
             f"An image-only post costs {1000 * m['seconds_per_image']:.0f} ms in-process, one at a time "
             f"(decode, RapidOCR detection at 480 px + recognition, open_nsfw, MiniLM on the text read, head; "
             f"no cache; faster of 2 passes over {m['cost_images']} test memes)."]
    return "\n".join(lines)


def run(args) -> str:
    return common.publish("pictures", "Pictures: caption vs picture vs both, on the meme sets",
                          report(measure(args), args), args)


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", help="run directory (default: the shipped default model)")
    parser.add_argument("--cost-images", type=int, default=30, help="test memes timed one at a time")
    common.add_common_options(parser)
    return parser
