"""Synthetic posts in the generic JSONL format, written from the tiny models' closed vocabulary.

Placeholder "harm words" stand in for real abusive text (none is ever committed): a post is labelled for a
category when it contains that category's marker word. Images are solid-colour squares; a red image marks
"sexual" so image-side learning can be checked too.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

CATEGORIES = ["toxicity", "hate", "harassment", "sexual", "violence", "self_harm"]
MARKERS = {"toxicity": "insultword", "hate": "slurword", "harassment": "insultword", "violence": "threatword",
           "sexual": "lewdword", "self_harm": "sadword"}
NEUTRAL = ("the a post about cats dogs weather sports music food travel city park game movie book calm happy "
           "friendly neutral ordinary report update hello thanks please today tomorrow").split()


def category_config(seed_phrases: bool = True) -> list[dict]:
    return [{"name": c, "description": f"a post about {MARKERS[c]}",
             "seed_phrases": [f"{MARKERS[c]} {MARKERS[c]}"] if seed_phrases else []} for c in CATEGORIES]


def make_post(rng: random.Random, i: int, harms: list[str], length: int = 8) -> dict:
    words = [rng.choice(NEUTRAL) for _ in range(length)]
    for cat in harms:
        words.insert(rng.randrange(len(words) + 1), MARKERS[cat])
    labels = {c: int(MARKERS[c] in words) for c in CATEGORIES}
    return {"id": f"p{i}", "text": " ".join(words), "labels": labels}


def write_dataset(path: Path, n: int = 300, seed: int = 0, positive_rate: float = 0.25,
                  unlabelled: tuple[str, ...] = ("self_harm",), images: bool = False, length: int = 8) -> Path:
    """Write n posts; categories in `unlabelled` are left out of every row's labels (unknown)."""
    from PIL import Image

    rng = random.Random(seed)
    harmful = [c for c in CATEGORIES if c not in ("harassment", "self_harm")]
    rows = []
    for i in range(n):
        harms = [rng.choice(harmful)] if rng.random() < positive_rate else []
        row = make_post(rng, i, harms, length)
        row["labels"] = {c: v for c, v in row["labels"].items() if c not in unlabelled}
        if images:
            red = row["labels"].get("sexual") == 1
            colour = (220, 20, 20) if red else rng.choice([(20, 20, 220), (20, 180, 20), (200, 200, 200)])
            (path.parent / "images").mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (40, 40), colour).save(path.parent / "images" / f"{row['id']}.png")
            row["image"] = f"images/{row['id']}.png"
        rows.append(row)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def tiny_config(train_path: Path, model_dir: Path, out_dir: Path, **sections) -> dict:
    """A complete config dict over one generic JSONL file and a tiny local text model."""
    config = {
        "categories": category_config(),
        "datasets": {"synthetic": {"loader": "jsonl", "path": str(train_path)}},
        "text_encoder": {"model": str(model_dir), "max_length": 16, "window_stride": 4, "batch_size": 64,
                         "precision": "fp32"},  # exact and the same on every CPU; bf16 is measured in bench
        "train": {"epochs": 40, "batch_size": 32, "lr": 0.02, "patience": 8},
        "split": {"validation_fraction": 0.2, "test_fraction": 0.2},
        "zero_shot": {"min_train_positives": 5},
        "run": {"name": "tiny", "output_dir": str(out_dir), "cache_dir": str(out_dir.parent / "cache")},
    }
    for key, value in sections.items():
        config.setdefault(key, {}).update(value)
    return config
