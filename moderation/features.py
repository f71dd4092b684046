"""Encoder outputs for a split, held as arrays: what the fusion head trains and predicts on.

`Features` keeps the text windows of all rows flat (W, Dt) with CSR-style `offsets` (the windows of row i are
offsets[i]:offsets[i+1]), image features (N, Di), presence flags and labels. With OCR on, the text read from
each picture is kept too (`ocr_text`), with its windows embedded by the same text encoder (`ocr_windows`,
`ocr_offsets`). With a lexical view (`moderation.lexical`), each row's caption and picture text also carry
its per-class lexical logits (`lexical`, `ocr_lexical`). `batch(idx)` turns a set of rows into the tensors
`ModerationModel.forward` takes.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

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
    ocr_text: list[str] | None = None  # (N,) text read from each picture ("" without image or text); None: OCR off
    ocr_windows: np.ndarray | None = None  # (W2, Dt) embeddings of the OCR text windows
    ocr_offsets: np.ndarray | None = None  # (N + 1,) int64, as `offsets`
    lexical: np.ndarray | None = None  # (N, C) float32 lexical logits of each caption; None: no lexical view
    ocr_lexical: np.ndarray | None = None  # (N, C) float32 lexical logits of the text read from each picture

    def __len__(self) -> int:
        return len(self.has_text)

    @property
    def has_ocr(self) -> np.ndarray:
        """(N,) bool: a picture whose text could be read."""
        if self.ocr_offsets is None:
            return np.zeros(len(self), bool)
        return np.diff(self.ocr_offsets) > 0

    def batch(self, idx: np.ndarray, device: str = "cpu") -> dict[str, torch.Tensor | None]:
        idx = np.asarray(idx)
        windows, owner = _gather(self.windows, self.offsets, idx)
        tensor = lambda a: torch.from_numpy(a).to(device) if a is not None else None
        out = {
            "text_windows": tensor(windows if self.windows.shape[0] else None),
            "owner": tensor(owner),
            "image": tensor(self.image[idx] if self.image is not None else None),
            "has_text": tensor(self.has_text[idx]),
            "has_image": tensor(self.has_image[idx]),
            "nsfw": tensor(np.nan_to_num(self.extras["nsfw"][idx])) if "nsfw" in self.extras else None,
        }
        if self.ocr_offsets is not None:
            ocr_windows, ocr_owner = _gather(self.ocr_windows, self.ocr_offsets, idx)
            out.update(ocr_windows=tensor(ocr_windows), ocr_owner=tensor(ocr_owner), has_ocr=tensor(self.has_ocr[idx]))
        if self.lexical is not None:
            out["lexical"] = tensor(self.lexical[idx])
            if self.ocr_lexical is not None:
                out["ocr_lexical"] = tensor(self.ocr_lexical[idx])
        return out

    def targets(self, idx: np.ndarray, device: str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        return torch.from_numpy(self.labels[idx]).to(device), torch.from_numpy(self.label_mask[idx]).to(device)

    def subset(self, idx: np.ndarray) -> Features:
        idx = np.asarray(idx)
        windows, owner = _gather(self.windows, self.offsets, idx)
        ocr = {}
        if self.ocr_offsets is not None:
            ocr_windows, ocr_owner = _gather(self.ocr_windows, self.ocr_offsets, idx)
            ocr = {"ocr_text": [self.ocr_text[i] for i in idx], "ocr_windows": ocr_windows,
                   "ocr_offsets": offsets_from_owner(ocr_owner, len(idx))}
        return Features(
            windows=windows if self.windows.shape[0] else self.windows[:0],
            offsets=offsets_from_owner(owner, len(idx)),
            image=self.image[idx] if self.image is not None else None,
            has_text=self.has_text[idx], has_image=self.has_image[idx],
            labels=self.labels[idx], label_mask=self.label_mask[idx],
            extras={k: v[idx] for k, v in self.extras.items()}, **ocr,
            lexical=self.lexical[idx] if self.lexical is not None else None,
            ocr_lexical=self.ocr_lexical[idx] if self.ocr_lexical is not None else None,
        )

    def with_lexical(self, lexical_model, texts: list[str | None]) -> Features:
        """These features with the lexical logits of each row's caption (`texts`, as featurized) and of the text
        read from its picture. Rows without one get 0, which the model never uses (it scores only what is there)."""
        num_classes = self.labels.shape[1]

        def logits(row_texts: list[str | None], present: np.ndarray) -> np.ndarray:
            out = np.zeros((len(self), num_classes), np.float32)
            rows = np.flatnonzero(present)
            if len(rows):
                out[rows] = lexical_model.logits([row_texts[i] for i in rows])
            return out

        ocr = logits(self.ocr_text, self.has_ocr) if self.ocr_text is not None else None
        return replace(self, lexical=logits(texts, self.has_text), ocr_lexical=ocr)


def _gather(windows: np.ndarray, offsets: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The windows of rows `idx` in row order, and their owner (position in `idx`) per window."""
    starts, ends = offsets[idx], offsets[idx + 1]
    lengths = ends - starts
    # All window indices of the chosen rows, in row order: start of each run + position within the run.
    window_idx = np.repeat(starts - np.cumsum(np.r_[0, lengths[:-1]]), lengths) + np.arange(lengths.sum())
    return windows[window_idx], np.repeat(np.arange(len(idx)), lengths)


def offsets_from_owner(owner: np.ndarray, num_rows: int) -> np.ndarray:
    """CSR offsets from a sorted owner array: offsets[i] = first window of row i."""
    counts = np.bincount(owner, minlength=num_rows)
    return np.r_[0, np.cumsum(counts)].astype(np.int64)


def featurize(rows: dict, num_classes: int, text_encoder, image_encoder, cache_dir=None, progress: bool = False,
              device: str = "cpu", ocr_reader=None, ocr_as_image_features: bool = False,
              lexical_model=None) -> Features:
    """The one featurizer: posts given as columns {"text", "image"[, "source", "labels", "label_mask"]} (lists)
    -> `Features`. Training, prediction, evaluation and serving all come through here.

    A text counts when it has a non-blank character (it is encoded stripped); an image may be a file path,
    raw bytes or a PIL image. With `cache_dir` (training on frozen encoders) embeddings are read from and
    written to the cache, per source dataset, so changing one dataset re-embeds only that one; serving passes
    none. Without "labels" every label is unknown.

    With `ocr_reader`, the text in each picture is read and embedded by the text encoder (`ocr_*` fields);
    `ocr_as_image_features` also appends its mean window embedding to the image features (trained image branch).
    With `lexical_model` (a fitted `moderation.lexical.LexicalModel`), captions and picture text get their lexical
    logits too (`Features.with_lexical`; training adds them once that model is fitted on the training split).
    """
    from moderation.encoders.cache import cached_image_features, cached_ocr_text, cached_text_windows

    n = len(rows["text"])
    texts = [(t or "").strip() for t in rows["text"]]
    has_text = np.array([bool(t) for t in texts], bool) & (text_encoder is not None)
    images = rows.get("image") or [None] * n
    reads_images = image_encoder is not None or (ocr_reader is not None and text_encoder is not None)
    has_image = np.array([im is not None and not is_blank_image(im) for im in images], bool) & reads_images
    windows, owners = [], []
    image = np.zeros((n, image_encoder.dim), np.float32) if image_encoder is not None else None
    extras: dict[str, np.ndarray] = {}
    ocr_text = [""] * n if ocr_reader is not None and text_encoder is not None else None
    for start, end in _runs(rows.get("source") or [""] * n):
        present = [i for i in range(start, end) if texts[i]] if text_encoder is not None else []
        if present:  # only rows with text get windows (a row without any has none)
            emb, owner = cached_text_windows(text_encoder, [texts[i] for i in present], cache_dir, progress, device)
            windows.append(emb)
            owners.append(np.asarray(present, np.int64)[owner])
        if image_encoder is not None and has_image[start:end].any():
            chunk = [im if ok else None for im, ok in zip(images[start:end], has_image[start:end])]
            feats, extra = cached_image_features(image_encoder, chunk, cache_dir, progress)
            image[start:end] = feats
            for name, values in extra.items():
                extras.setdefault(name, np.full(n, np.nan, np.float32))[start:end] = values
        if ocr_text is not None and has_image[start:end].any():
            chunk = [im if ok else None for im, ok in zip(images[start:end], has_image[start:end])]
            ocr_text[start:end] = cached_ocr_text(ocr_reader, chunk, cache_dir, progress)
    ocr = _embed_ocr(ocr_text, text_encoder, cache_dir, progress, device) if ocr_text is not None else {}
    if ocr and ocr_as_image_features:
        pooled = _mean_windows(ocr["ocr_windows"], ocr["ocr_offsets"])  # (N, Dt), zeros where nothing was read
        image = pooled if image is None else np.concatenate([image, pooled], axis=1)
    dim = text_encoder.dim if text_encoder is not None else 0
    all_windows = np.concatenate(windows) if windows else np.zeros((0, dim), np.float32)
    owner = np.concatenate(owners) if owners else np.zeros(0, np.int64)
    if "labels" in rows:
        labels = np.asarray(rows["labels"], np.float32).reshape(n, num_classes)
        label_mask = np.asarray(rows["label_mask"], bool).reshape(n, num_classes)
    else:
        labels, label_mask = np.zeros((n, num_classes), np.float32), np.zeros((n, num_classes), bool)
    features = Features(windows=all_windows, offsets=offsets_from_owner(owner, n), image=image, has_text=has_text,
                        has_image=has_image, labels=labels, label_mask=label_mask, extras=extras, **ocr)
    return features.with_lexical(lexical_model, texts) if lexical_model is not None else features


def _embed_ocr(ocr_text: list[str], text_encoder, cache_dir, progress: bool, device: str) -> dict:
    """Text-encoder windows of the pictures' text (only where something was read)."""
    from moderation.encoders.cache import cached_text_windows

    read = [i for i, t in enumerate(ocr_text) if t.strip()]
    windows = np.zeros((0, text_encoder.dim), np.float32)
    owner = np.zeros(0, np.int64)
    if read:
        windows, local_owner = cached_text_windows(text_encoder, [ocr_text[i].strip() for i in read], cache_dir,
                                                   progress, device)
        owner = np.asarray(read, np.int64)[local_owner]
    return {"ocr_text": ocr_text, "ocr_windows": windows, "ocr_offsets": offsets_from_owner(owner, len(ocr_text))}


def _mean_windows(windows: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """(N, D) mean of each row's windows; zeros for a row without any."""
    out = np.zeros((len(offsets) - 1, windows.shape[1]), np.float32)
    counts = np.diff(offsets)
    owner = np.repeat(np.arange(len(counts)), counts)
    np.add.at(out, owner, windows)
    return (out / np.maximum(counts, 1)[:, None]).astype(np.float32)


def is_blank_image(image) -> bool:
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
