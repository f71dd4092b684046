"""Loaders for the public meme sets (image + OCR text). Only rows whose image file exists are kept.

Both sets have no official split, so each row gets a `group` key that keeps related memes in one split:
re-posts and template variants of one meme must not sit on both sides of a train/test boundary.
"""

from __future__ import annotations

import re
from pathlib import Path

import datasets
import pandas as pd

from moderation.data.records import DataError
from moderation.data.sources._common import finish, need_file, read_json_lines, read_table
from moderation.data.splits import normalise_text

CM_OFF_LABELS = {"Level1": "level1", "Level2": "level2", "Valence": "valence", "Sarcasm": "sarcasm", "Joy": "joy",
                 "Sadness": "sadness", "Anger": "anger", "Fear": "fear", "Surprise": "surprise"}


def _image_paths(relative: pd.Series, root: Path) -> pd.Series:
    """Absolute paths of the files under `root`; None where the file is absent."""
    return relative.map(lambda p: str((root / p).resolve()) if (root / p).is_file() else None, na_action="ignore")


def load_cm_off_meme_sample(root: Path) -> datasets.Dataset:
    """Code-mixed memes; grouped by collection prefix (eng, meme, ramdev, gay, rhea, fille), which follows topic.

    The files are named .png though most are JPEG data: open them with PIL, which reads the content.
    """
    path = need_file(root, "sample_data.csv")
    frame = read_table(path, ["Name", "Text", *CM_OFF_LABELS])
    images = Path(root) / "images"
    if not images.is_dir():
        raise DataError(f"{root}: missing folder 'images'")
    out = frame[list(CM_OFF_LABELS)].rename(columns=CM_OFF_LABELS)
    out["id"] = frame["Name"]
    out["text"] = frame["Text"]
    out["image"] = _image_paths(frame["Name"], images)
    prefix = frame["Name"].map(lambda n: (re.match(r"[A-Za-z]+", n) or [""])[0].lower(), na_action="ignore")
    out["group"] = "cm_off:" + prefix
    return finish(out[out["image"].notna()], list(CM_OFF_LABELS.values()), path)


def load_religious_hateful_memes(root: Path) -> datasets.Dataset:
    """Binary hateful/not memes; grouped by normalised meme text so re-posts of one meme stay together."""
    path = need_file(root, "labels.jsonl")
    frame = read_json_lines(path, ["id", "img", "label", "text"])
    out = pd.DataFrame({"id": frame["id"], "text": frame["text"], "hateful": frame["label"]})
    out["image"] = _image_paths(frame["img"], Path(root))
    # Memes without text fall back to their own id, so they are not all lumped into one group.
    keys = frame["text"].map(normalise_text)
    out["group"] = "religious_memes:" + keys.where(keys != "", "id-" + frame["id"])
    return finish(out[out["image"].notna()], ["hateful"], path)
