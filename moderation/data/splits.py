"""Seeded, leak-free train / validation / test splits.

- A dataset's official split is kept. If it has train but no validation, validation is carved out of train.
- Rows without an official split are assigned by a seeded hash of their group key, so a row's split never
  changes when other rows are added, and rows of one group (a meme collection, the same normalised text)
  always land together.
- Across all datasets, a training row whose normalised text also occurs in validation or test is dropped:
  the same post in two datasets must not leak.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

_NON_WORD = re.compile(r"[\W_]+", re.UNICODE)


def normalise_text(text: str | None) -> str:
    """Lower-case, accent-folded, punctuation-free text: the key for duplicate detection."""
    if not text:
        return ""
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode() or text
    return _NON_WORD.sub(" ", text.lower()).strip()


def bucket(key: str, seed: int) -> float:
    """A stable pseudo-random number in [0, 1) for a key."""
    digest = hashlib.blake2b(f"{seed}:{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def group_key(row: dict) -> str:
    if row.get("group"):
        return "group:" + row["group"]
    norm = normalise_text(row.get("text"))
    # Image-only rows (or texts that normalise to nothing) are their own group.
    return "text:" + norm if norm else "id:" + str(row.get("source", "")) + ":" + str(row["id"])


def assign_split(row: dict, seed: int, validation_fraction: float, test_fraction: float, has_validation: bool) -> str:
    official = row.get("split") or ""
    if official in ("validation", "test") or (official == "train" and has_validation):
        return official
    u = bucket(group_key(row), seed)
    if official == "train":
        # Official train without a validation part: carve validation out of train only, never out of test.
        return "validation" if u < validation_fraction else "train"
    if u < test_fraction:
        return "test"
    if u < test_fraction + validation_fraction:
        return "validation"
    return "train"
