"""Losses for rare, partly-labelled multi-label targets.

Every loss takes a `label_mask`: an unknown label contributes nothing (it is not a negative). Positives are
rare, and rarer for some classes, so each class's positives can be up-weighted (`pos_weight` = negatives /
positives among known labels, capped), or the loss focused on hard examples (focal loss).
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


def masked_bce(logit: torch.Tensor, label: torch.Tensor, label_mask: torch.Tensor,
               pos_weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean BCE over known labels only. Shapes (B, C); pos_weight (C,)."""
    loss = F.binary_cross_entropy_with_logits(logit, label, pos_weight=pos_weight, reduction="none")
    mask = label_mask.to(loss.dtype)
    return (loss * mask).sum() / mask.sum().clamp(min=1.0)


def masked_focal(logit: torch.Tensor, label: torch.Tensor, label_mask: torch.Tensor, gamma: float = 2.0,
                 pos_weight: torch.Tensor | None = None) -> torch.Tensor:
    """Focal loss (Lin et al. 2017) over known labels: (1 - p_t)^gamma down-weights easy examples."""
    bce = F.binary_cross_entropy_with_logits(logit, label, pos_weight=pos_weight, reduction="none")
    p = torch.sigmoid(logit)
    p_t = p * label + (1 - p) * (1 - label)
    loss = (1 - p_t).pow(gamma) * bce
    mask = label_mask.to(loss.dtype)
    return (loss * mask).sum() / mask.sum().clamp(min=1.0)


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
