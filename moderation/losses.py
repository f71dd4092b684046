"""Losses for rare, partly-labelled multi-label targets.

Every loss takes a `label_mask`: an unknown label contributes nothing (it is not a negative). Positives are
rare, and rarer for some classes, so each class's positives can be up-weighted (`pos_weight` = negatives /
positives among known labels, capped), or the loss focused on hard examples (focal loss).

Training pools sources whose base rates differ wildly (one source's posts are 83% toxic, another's 8%), so a
head can lower its loss by recognising which source a post resembles rather than what it says, and that
does not carry to a source it never saw. `source_balanced_weights` takes the shortcut away: per class, every
source weighs the same, and within a source its positives and its negatives weigh the same.
`SourceIntercepts` answers it another way: a training-only offset per source absorbs each source's base rate.
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


def source_base_rates(labels: np.ndarray, label_mask: np.ndarray, sources) -> tuple[np.ndarray, np.ndarray,
                                                                                     np.ndarray]:
    """(row source index (N,), free (S, C) bool, log-odds (S, C)), sources numbered in sorted order. A (source,
    class) pair is free when the source has both a known positive and a known negative of the class: the pairs a
    per-source intercept means a base rate for; their log-odds of a positive, 0 elsewhere. A source with only
    negatives of a class (generated hard negatives, say) gets none, so its rows teach by what they say instead
    of being absorbed by an offset."""
    names, index = np.unique(np.asarray(sources), return_inverse=True)
    labels, label_mask = np.asarray(labels), np.asarray(label_mask, bool)
    one_hot = np.eye(len(names), dtype=np.float32)[index]  # (N, S)
    positives, negatives = one_hot.T @ (labels * label_mask), one_hot.T @ ((1 - labels) * label_mask)
    free = (positives > 0) & (negatives > 0)
    log_odds = np.where(free, np.log(np.maximum(positives, 1) / np.maximum(negatives, 1)), 0.0)
    return index.astype(np.int64), free, log_odds


class SourceIntercepts(torch.nn.Module):
    """Training-only logit offsets, one per (source, class) pair labelled both ways (`source_base_rates`), centred per
    class over its free sources, so the shared head scores the average source.

    Why: sources label at wildly different base rates (one source's posts are 83% toxic, another's 8%) and by
    different standards. A pooled head lowers its loss by recognising which source a post resembles, which does
    not carry to a source it never saw. With an intercept per source the base rate is the intercept's job, and
    the head learns what separates positives from negatives within each source. The offsets are dropped after
    training: nothing changes at prediction time. Unlike `source_balanced_weights`, no row's weight changes.

    >>> si = SourceIntercepts(np.array([[1.], [0.], [1.], [0.], [0.]]), np.ones((5, 1), bool), ["a", "a", "b", "b", "c"])
    >>> si.free[:, 0].tolist()  # c has no positive: no intercept of its own
    [True, True, False]
    >>> si(np.array([0, 2, 4]))[:, 0].tolist()  # a and b both 50% positive: no offset to start with
    [0.0, 0.0, 0.0]
    >>> with torch.no_grad():
    ...     _ = si.offsets.copy_(torch.tensor([[2.], [0.], [5.]]))
    >>> si(np.array([0, 2, 4]))[:, 0].tolist()
    [1.0, -1.0, 0.0]
    """

    def __init__(self, labels: np.ndarray, label_mask: np.ndarray, sources):
        super().__init__()
        index, free, log_odds = source_base_rates(labels, label_mask, sources)
        self.free = free
        self.register_buffer("index", torch.from_numpy(index))
        self.register_buffer("free_mask", torch.from_numpy(free.astype(np.float32)))
        # Start at each source's log-odds: a feature that tells sources apart is, for a head, as good a base rate
        # as the intercept, and from zero gradient descent would share the work between them. Started here, the
        # base rates are explained before the head learns anything. (pos_weight shifts every source's log-odds
        # alike, and the centring takes that out.)
        self.offsets = torch.nn.Parameter(torch.from_numpy(log_odds.astype(np.float32)))

    def forward(self, rows) -> torch.Tensor:
        """(B, C) offsets for training rows `rows` (indices into the rows the intercepts were built on)."""
        free = self.free_mask
        mean = (self.offsets * free).sum(0) / free.sum(0).clamp(min=1)
        centred = (self.offsets - mean) * free
        return centred[self.index[torch.as_tensor(rows, device=self.index.device)]]


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
