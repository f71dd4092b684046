"""The shape of a loaded row, shared by every loader and by everything downstream.

A source loader returns a `datasets.Dataset` with the RAW columns below plus its own raw label fields
(strings, `None` where the source has no value). `moderation.data.labelmap` then turns the raw fields into
`labels` (one float per category) and `label_mask` (True where that label is known).
"""

from __future__ import annotations

ID = "id"  # str, unique within its source and stable across runs
TEXT = "text"  # str or None
IMAGE = "image"  # absolute path to an image file, or None
SOURCE = "source"  # the dataset's name in the config
SPLIT = "split"  # "train" | "validation" | "test" | "" (no official split: assigned by moderation.data.splits)
GROUP = "group"  # rows sharing a group always land in the same split ("" = group by normalised text)
RAW_COLUMNS = (ID, TEXT, IMAGE, SPLIT, GROUP)

LABELS = "labels"  # list[float], one per category, 0.0 where unknown
LABEL_MASK = "label_mask"  # list[bool], True where the label is known

SPLITS = ("train", "validation", "test")


class DataError(ValueError):
    """A dataset file is unusable; the message names the file, and the column, key or row at fault."""
