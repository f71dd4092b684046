"""Losses for rare, partly-labelled multi-label targets.

Every loss takes a `label_mask`: an unknown label contributes nothing (it is not a negative). Positives are
rare, and rarer for some classes, so each class's positives can be up-weighted (`pos_weight` = negatives /
positives among known labels, capped), or the loss focused on hard examples (focal loss).

Training pools sources whose base rates differ wildly (one source's posts are 83% toxic, another's 8%), so a
head can lower its loss by recognising which source a post resembles rather than what it says, and that
does not carry to a source it never saw. `source_balanced_weights` takes the shortcut away: per class, every
source weighs the same, and within a source its positives and its negatives weigh the same.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def positive_weights(labels: np.ndarray, label_mask: np.ndarray, cap: float) -> np.ndarray:
    """(C,) negatives/positives per class among known labels, in [1, cap]; 1 where a class has no positive."""
    pos = (labels * label_mask).sum(0)
    neg = ((1 - labels) * label_mask).sum(0)
    ratio = np.where(pos > 0, neg / np.maximum(pos, 1), 1.0)
    return np.clip(ratio, 1.0, cap).astype(np.float32)


def source_balanced_weights(labels: np.ndarray, label_mask: np.ndarray, sources, cap: float) -> np.ndarray:
    """(N, C) loss weights: per class, each source that labels it carries the same total weight, split evenly
    between its known positives and its known negatives (a source with only one of the two gives that one the
    whole share). Weights average 1 over each class's known labels, so the loss keeps its scale; each is capped
    at `cap` times that average (a source with a dozen positives of a class would otherwise make a dozen rows
    outweigh thousands). Unknown labels get 0.

    >>> w = source_balanced_weights(np.array([[1.], [0.], [0.], [0.], [1.]]), np.ones((5, 1), bool),
    ...                             ["a", "a", "a", "a", "b"], cap=20)
    >>> [round(float(x), 3) for x in w[:, 0]]
    [1.25, 0.417, 0.417, 0.417, 2.5]
    """
    labels = np.asarray(labels, dtype=np.float32)
    label_mask = np.asarray(label_mask, dtype=bool)
    sources = np.asarray(sources)
    weights = np.zeros(labels.shape, dtype=np.float32)
    for c in range(labels.shape[1]):
        known = label_mask[:, c]
        groups = {(s, v): np.flatnonzero(known & (sources == s) & (labels[:, c] == v))
                  for s in np.unique(sources[known]) for v in (0.0, 1.0)}
        groups = {key: rows for key, rows in groups.items() if len(rows)}
        share_of_source = {s: 1.0 / sum(1 for (t, _) in groups if t == s) for (s, _) in groups}
        n_sources = len(share_of_source)
        for (s, _), rows in groups.items():
            # Total weight known.sum() over the class; this group's share of it, spread over its rows.
            weights[rows, c] = known.sum() * share_of_source[s] / n_sources / len(rows)
    return np.minimum(weights, cap).astype(np.float32)


def _masked_mean(loss: torch.Tensor, label_mask: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    mask = label_mask.to(loss.dtype)
    if weight is not None:
        mask = mask * weight
    return (loss * mask).sum() / mask.sum().clamp(min=1e-6 if weight is not None else 1.0)


def masked_bce(logit: torch.Tensor, label: torch.Tensor, label_mask: torch.Tensor,
               pos_weight: torch.Tensor | None = None, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean BCE over known labels only (weighted by `weight`, (B, C), where given). Shapes (B, C); pos_weight (C,)."""
    loss = F.binary_cross_entropy_with_logits(logit, label, pos_weight=pos_weight, reduction="none")
    return _masked_mean(loss, label_mask, weight)


def masked_focal(logit: torch.Tensor, label: torch.Tensor, label_mask: torch.Tensor, gamma: float = 2.0,
                 pos_weight: torch.Tensor | None = None, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Focal loss (Lin et al. 2017) over known labels: (1 - p_t)^gamma down-weights easy examples."""
    bce = F.binary_cross_entropy_with_logits(logit, label, pos_weight=pos_weight, reduction="none")
    p = torch.sigmoid(logit)
    p_t = p * label + (1 - p) * (1 - label)
    return _masked_mean((1 - p_t).pow(gamma) * bce, label_mask, weight)


def downsample_negatives(labels: np.ndarray, label_mask: np.ndarray, rate: float, seed: int) -> np.ndarray:
    """Row indices to keep: every row with a known positive, and a `rate` fraction of the all-negative rows.

    The kept negatives are 1/rate times over-represented, so the odds the model learns are 1/rate times too
    high; `prior_correction(rate)` is added to the logits at prediction time to undo that.
    """
    has_positive = ((labels * label_mask).sum(1) > 0)
    rng = np.random.default_rng(seed)
    keep = has_positive | (rng.random(len(labels)) < rate)
    return np.flatnonzero(keep)


def prior_correction(rate: float) -> float:
    """Logit offset that maps scores learned on downsampled negatives back to the true prior: log(rate)."""
    return float(np.log(rate))
