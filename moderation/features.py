"""Encoder outputs for a split, held as arrays: what the fusion head trains and predicts on.

`Features` keeps the text windows of all rows flat (W, Dt) with CSR-style `offsets` (the windows of row i are
offsets[i]:offsets[i+1]), image features (N, Di), presence flags and labels. `batch(idx)` turns a set of rows
into the tensors `ModerationModel.forward` takes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch


@dataclass
class Features:
    windows: np.ndarray  # (W, Dt) float32, L2-normalised text window embeddings (W = 0 without text encoder)
    offsets: np.ndarray  # (N + 1,) int64
    image: np.ndarray | None  # (N, Di) float32, zeros where a row has no image
    has_text: np.ndarray  # (N,) bool
    has_image: np.ndarray  # (N,) bool
    labels: np.ndarray  # (N, C) float32, 0 where unknown
    label_mask: np.ndarray  # (N, C) bool
    extras: dict[str, np.ndarray] = field(default_factory=dict)  # e.g. {"nsfw": (N,)}

    def __len__(self) -> int:
        return len(self.has_text)

    def batch(self, idx: np.ndarray, device: str = "cpu") -> dict[str, torch.Tensor | None]:
        idx = np.asarray(idx)
        starts, ends = self.offsets[idx], self.offsets[idx + 1]
        lengths = ends - starts
        # All window indices of the chosen rows, in row order: start of each run + position within the run.
        window_idx = np.repeat(starts - np.cumsum(np.r_[0, lengths[:-1]]), lengths) + np.arange(lengths.sum())
        owner = np.repeat(np.arange(len(idx)), lengths)
        windows = self.windows[window_idx] if self.windows.shape[0] else None
        return {
            "text_windows": torch.from_numpy(windows).to(device) if windows is not None else None,
            "owner": torch.from_numpy(owner).to(device),
            "image": torch.from_numpy(self.image[idx]).to(device) if self.image is not None else None,
            "has_text": torch.from_numpy(self.has_text[idx]).to(device),
            "has_image": torch.from_numpy(self.has_image[idx]).to(device),
            "nsfw": torch.from_numpy(np.nan_to_num(self.extras["nsfw"][idx])).to(device) if "nsfw" in self.extras else None,
        }

    def targets(self, idx: np.ndarray, device: str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        return torch.from_numpy(self.labels[idx]).to(device), torch.from_numpy(self.label_mask[idx]).to(device)

    def subset(self, idx: np.ndarray) -> Features:
        b = self.batch(idx)
        lengths = self.offsets[np.asarray(idx) + 1] - self.offsets[np.asarray(idx)]
        return Features(
            windows=b["text_windows"].numpy() if b["text_windows"] is not None else self.windows[:0],
            offsets=np.r_[0, np.cumsum(lengths)].astype(np.int64),
            image=self.image[idx] if self.image is not None else None,
            has_text=self.has_text[idx], has_image=self.has_image[idx],
            labels=self.labels[idx], label_mask=self.label_mask[idx],
            extras={k: v[idx] for k, v in self.extras.items()},
        )


def offsets_from_owner(owner: np.ndarray, num_rows: int) -> np.ndarray:
    """CSR offsets from a sorted owner array: offsets[i] = first window of row i."""
    counts = np.bincount(owner, minlength=num_rows)
    return np.r_[0, np.cumsum(counts)].astype(np.int64)


def featurize(rows: dict, num_classes: int, text_encoder, image_encoder, cache_dir=None, progress: bool = False,
              device: str = "cpu") -> Features:
    """The one featurizer: posts given as columns {"text", "image"[, "source", "labels", "label_mask"]} (lists)
    -> `Features`. Training, prediction, evaluation and serving all come through here.

    A text counts when it has a non-blank character (it is encoded stripped); an image may be a file path,
    raw bytes or a PIL image. With `cache_dir` (training on frozen encoders) embeddings are read from and
    written to the cache, per source dataset, so changing one dataset re-embeds only that one; serving passes
    none. Without "labels" every label is unknown.
    """
    from moderation.encoders.cache import cached_image_features, cached_text_windows

    n = len(rows["text"])
    texts = [(t or "").strip() for t in rows["text"]]
    has_text = np.array([bool(t) for t in texts], bool) & (text_encoder is not None)
    images = rows.get("image") or [None] * n
    has_image = np.array([im is not None and not _blank_path(im) for im in images], bool) & (image_encoder is not None)
    windows, owners = [], []
    image = np.zeros((n, image_encoder.dim), np.float32) if image_encoder is not None else None
    extras: dict[str, np.ndarray] = {}
    for start, end in _runs(rows.get("source") or [""] * n):
        if text_encoder is not None:
            emb, owner = cached_text_windows(text_encoder, texts[start:end], cache_dir, progress, device)
            windows.append(emb)
            owners.append(owner + start)
        if image_encoder is not None and has_image[start:end].any():
            chunk = [im if ok else None for im, ok in zip(images[start:end], has_image[start:end])]
            feats, extra = cached_image_features(image_encoder, chunk, cache_dir, progress)
            image[start:end] = feats
            for name, values in extra.items():
                extras.setdefault(name, np.full(n, np.nan, np.float32))[start:end] = values
    dim = text_encoder.dim if text_encoder is not None else 0
    all_windows = np.concatenate(windows) if windows else np.zeros((0, dim), np.float32)
    owner = np.concatenate(owners) if owners else np.zeros(0, np.int64)
    if "labels" in rows:
        labels = np.asarray(rows["labels"], np.float32).reshape(n, num_classes)
        label_mask = np.asarray(rows["label_mask"], bool).reshape(n, num_classes)
    else:
        labels, label_mask = np.zeros((n, num_classes), np.float32), np.zeros((n, num_classes), bool)
    return Features(windows=all_windows, offsets=offsets_from_owner(owner, n), image=image, has_text=has_text,
                    has_image=has_image, labels=labels, label_mask=label_mask, extras=extras)


def _blank_path(image) -> bool:
    """An empty string or empty bytes stands for "no image" in dataset columns."""
    return isinstance(image, (str, bytes)) and not image


def _runs(sources: list[str]) -> list[tuple[int, int]]:
    """Contiguous [start, end) runs of equal source names."""
    runs, start = [], 0
    for i in range(1, len(sources) + 1):
        if i == len(sources) or sources[i] != sources[start]:
            runs.append((start, i))
            start = i
    return runs
