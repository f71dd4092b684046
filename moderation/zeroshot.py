"""Zero-shot scores for categories with too few labelled positives to train on.

A category's written description and seed phrases are embedded with the text encoder (its prototypes); a
post's zero-shot similarity is the highest cosine between any of its text windows and any prototype. A category
may also list benign twins (`contrast_phrases`: harmless sentences in its seed phrases' frames, "I wrote my
cover letter" beside "I wrote my suicide note"); its similarity is then the seeds' highest cosine less
`contrast_weight` times the twins' highest. A short sentence embeds largely by its frame (first person, a time
of day, a verb), so without them everyday chatter lands close to first-person seeds: of 60 everyday posts
written for the purpose, 65% reached self_harm's review threshold before, 7% with rewritten seeds and twins (22%
-> 2% of 60 written after the twins; BENCHMARKS.md, Self-harm). With a
pooling that puts several layers side by side (`text_encoder.pooling`), the cosine is taken on the last
layer's part only (`similarity_dims`): that is what sentence encoders are trained to compare, and what the
seed phrases were written and measured with (on the whole embedding, self-harm posts reaching review fell
62% -> 33% on r/SuicideWatch; BENCHMARKS.md, Self-harm). The similarity becomes a logit through a per-class affine map, calibrated:
- by logistic regression on whatever labels exist for the class (both positives and negatives needed), or
- with no such labels, on the training corpus itself: the corpus's 99th-percentile similarity maps to 0.5
  and the median to about 0.02. This assumes the class is rare in ordinary posts (true for the harms here)
  and is marked as such ("corpus_quantile") in the model card.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from torch import nn

from moderation.fusion import max_per_owner

log = logging.getLogger(__name__)


class ZeroShotScorer(nn.Module):
    """Prototype similarity -> logit for the `active` classes. Buffers only: it is calibrated, not trained."""

    def __init__(self, prototypes: torch.Tensor, prototype_class: torch.Tensor, num_classes: int,
                 similarity_dims: int | None = None, contrast: torch.Tensor | None = None,
                 contrast_weight: float = 0.0):
        super().__init__()
        if similarity_dims is not None and not 0 < similarity_dims <= prototypes.shape[1]:
            raise ValueError(f"similarity_dims={similarity_dims} is not within the embedding's {prototypes.shape[1]}")
        self.similarity_dims = similarity_dims  # compare the trailing part only (None: the whole embedding)
        self.register_buffer("prototypes", nn.functional.normalize(prototypes.float(), dim=-1))  # (P, D)
        self.register_buffer("prototype_class", prototype_class.long())  # (P,)
        # (P,) True for a benign twin: its similarity counts against its class, weighted by contrast_weight.
        self.register_buffer("contrast", torch.zeros(len(prototype_class), dtype=torch.bool) if contrast is None
                             else contrast.bool())
        self.contrast_weight = float(contrast_weight)
        self.register_buffer("scale", torch.zeros(num_classes))
        self.register_buffer("offset", torch.zeros(num_classes))
        self.register_buffer("active", torch.zeros(num_classes, dtype=torch.bool))
        self.num_classes = num_classes

    def similarity(self, text_windows: torch.Tensor, owner: torch.Tensor, batch: int) -> torch.Tensor:
        """(B, C) per class: the highest window-seed cosine of a post, less contrast_weight times its highest
        window-twin cosine where the class has twins (-1 for classes without prototypes)."""
        windows, prototypes = text_windows, self.prototypes  # both L2-normalised
        if self.similarity_dims is not None:
            k = self.similarity_dims
            windows = nn.functional.normalize(windows[:, -k:], dim=-1)
            prototypes = nn.functional.normalize(prototypes[:, -k:], dim=-1)
        sims = windows @ prototypes.T  # (W, P)
        seeds = self._highest(sims[:, ~self.contrast], self.prototype_class[~self.contrast], owner, batch)
        if not self.contrast.any() or self.contrast_weight == 0:
            return seeds
        twins = self._highest(sims[:, self.contrast], self.prototype_class[self.contrast], owner, batch)
        has_twins = torch.zeros(self.num_classes, dtype=torch.bool, device=sims.device)
        has_twins[self.prototype_class[self.contrast]] = True
        return torch.where(has_twins, seeds - self.contrast_weight * twins, seeds)

    def _highest(self, sims: torch.Tensor, classes: torch.Tensor, owner: torch.Tensor, batch: int) -> torch.Tensor:
        """(B, C) highest cosine per post and class over its windows and the given prototypes' columns."""
        per_class = sims.new_full((sims.shape[0], self.num_classes), -1.0)
        index = classes.unsqueeze(0).expand_as(sims)
        per_class = per_class.scatter_reduce(1, index, sims, reduce="amax", include_self=True)  # (W, C)
        return max_per_owner(per_class, owner, batch)

    def logit(self, similarity: torch.Tensor) -> torch.Tensor:
        return self.scale * similarity + self.offset


def build_prototypes(encoder, categories, names: list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Embed each category's description, seed phrases and benign twins: (P, D) prototypes, (P,) class
    indices and (P,) whether each is a twin."""
    phrases, classes, contrast = [], [], []
    for cat in categories:
        for phrase, twin in [(cat.description, False), *((p, False) for p in cat.seed_phrases),
                             *((p, True) for p in cat.contrast_phrases)]:
            phrases.append(phrase)
            classes.append(names.index(cat.name))
            contrast.append(twin)
    emb, owner = encoder.encode(phrases)
    # A phrase longer than one window has several; keep its first window (phrases are short).
    first = np.unique(owner, return_index=True)[1]
    return torch.from_numpy(emb[first]), torch.tensor(classes), torch.tensor(contrast)


def calibrate(similarity: np.ndarray, labels: np.ndarray | None, label_mask: np.ndarray | None) -> tuple[float, float, str]:
    """(scale, offset, method) for one class from its similarities and whatever labels exist."""
    if labels is not None and label_mask is not None:
        known = label_mask.astype(bool)
        y = labels[known]
        if y.size and 0 < y.sum() < y.size:
            from sklearn.linear_model import LogisticRegression

            lr = LogisticRegression(C=10.0).fit(similarity[known].reshape(-1, 1), y)
            if lr.coef_[0, 0] > 0:  # a negative slope would mean "less similar = more harmful": not trusted
                return float(lr.coef_[0, 0]), float(lr.intercept_[0]), f"labels (n={y.size}, positives={int(y.sum())})"
    q50, q99 = np.quantile(similarity, [0.5, 0.99])
    scale = 4.0 / max(q99 - q50, 1e-3)
    return float(scale), float(-scale * q99), "corpus_quantile"
