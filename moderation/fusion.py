"""The multi-label fusion heads: per-modality logits, combined per class.

Inputs for a batch of B posts: text window embeddings (W, Dt) with `owner` (W,) mapping each window to its
post, image features (B, Di), and presence flags (B,) per modality. Every head returns text-only,
image-only and fused logits (B, C), so each response can show the three scores side by side.

- late: each modality is scored on its own; the fused logit is a learned per-class weighted sum of the
  two (a post with one modality missing gets that modality's logit alone).
- concat: one MLP over [text ⊕ image ⊕ presence]; it can catch harm that exists only in the combination
  (a harmless caption on a harmless image that together are hateful), which late fusion cannot.
- text_only / image_only: the baselines of the ladder.

Text is scored per window and the maximum over a post's windows kept: harm anywhere in a long post counts.

`HeadEnsemble` averages the logits of several such heads trained apart from different seeds (`head.members`).
"""

from __future__ import annotations

import torch
from torch import nn

FUSIONS = ("late", "concat", "text_only", "image_only")


def _scorer(in_dim: int, num_classes: int, hidden_dim: int, dropout: float) -> nn.Module:
    if hidden_dim == 0:
        return nn.Sequential(nn.Dropout(dropout), nn.Linear(in_dim, num_classes))
    return nn.Sequential(nn.Dropout(dropout), nn.Linear(in_dim, hidden_dim), nn.GELU(), nn.Dropout(dropout),
                         nn.Linear(hidden_dim, num_classes))


def max_per_owner(values: torch.Tensor, owner: torch.Tensor, num_owners: int) -> torch.Tensor:
    """(W, C) window values -> (B, C): the maximum over each owner's windows (-inf-free: empty -> 0)."""
    out = values.new_full((num_owners, values.shape[1]), float("-inf"))
    out = out.scatter_reduce(0, owner.unsqueeze(1).expand_as(values), values, reduce="amax", include_self=True)
    return torch.where(torch.isinf(out), torch.zeros_like(out), out)


def mean_per_owner(values: torch.Tensor, owner: torch.Tensor, num_owners: int) -> torch.Tensor:
    """(W, D) -> (B, D): the mean over each owner's windows."""
    total = values.new_zeros((num_owners, values.shape[1])).index_add(0, owner, values)
    count = values.new_zeros(num_owners).index_add(0, owner, torch.ones_like(owner, dtype=values.dtype))
    return total / count.clamp(min=1.0).unsqueeze(1)


class FusionHead(nn.Module):
    def __init__(self, fusion: str, text_dim: int, image_dim: int, num_classes: int, hidden_dim: int = 0,
                 dropout: float = 0.1):
        super().__init__()
        if fusion not in FUSIONS:
            raise ValueError(f"head.fusion: {fusion!r} is not one of {FUSIONS}")
        self.fusion, self.text_dim, self.image_dim, self.num_classes = fusion, text_dim, image_dim, num_classes
        self.text_scorer = _scorer(text_dim, num_classes, hidden_dim, dropout) if text_dim else None
        self.image_scorer = _scorer(image_dim, num_classes, hidden_dim, dropout) if image_dim else None
        # Per-feature standardisation of the frozen inputs (set from training data by `set_input_stats`):
        # linear heads on raw sentence embeddings train slowly because their features vary on tiny scales.
        for name, dim in (("text", text_dim), ("image", image_dim)):
            self.register_buffer(f"{name}_shift", torch.zeros(dim))
            self.register_buffer(f"{name}_scale", torch.ones(dim))
        if fusion == "late":
            # Start as a plain sum of the two logits (independent evidence); training re-weighs per class.
            self.text_weight = nn.Parameter(torch.ones(num_classes))
            self.image_weight = nn.Parameter(torch.ones(num_classes))
            self.both_bias = nn.Parameter(torch.zeros(num_classes))
        if fusion == "concat":
            self.joint_scorer = _scorer(text_dim + image_dim + 2, num_classes, max(hidden_dim, 256), dropout)

    @torch.no_grad()
    def set_input_stats(self, text_windows: torch.Tensor | None, image: torch.Tensor | None) -> None:
        """Standardise each input feature to zero mean, unit variance over the training rows given."""
        for name, values in (("text", text_windows), ("image", image)):
            if values is not None and values.shape[0] > 1:
                getattr(self, f"{name}_shift").copy_(values.mean(0))
                getattr(self, f"{name}_scale").copy_(values.std(0).clamp(min=1e-6))

    def forward(self, text_windows: torch.Tensor | None, owner: torch.Tensor | None, image: torch.Tensor | None,
                has_text: torch.Tensor, has_image: torch.Tensor) -> dict[str, torch.Tensor]:
        batch = has_text.shape[0]
        if text_windows is not None:
            text_windows = (text_windows - self.text_shift) / self.text_scale
        if image is not None:
            image = (image - self.image_shift) / self.image_scale
        zeros = has_text.new_zeros((batch, self.num_classes), dtype=torch.float32)
        text_logit = image_logit = zeros
        if self.text_scorer is not None and text_windows is not None and text_windows.shape[0]:
            text_logit = max_per_owner(self.text_scorer(text_windows), owner, batch)  # (B, C)
        if self.image_scorer is not None and image is not None:
            image_logit = self.image_scorer(image)  # (B, C)
        t, i = has_text.unsqueeze(1), has_image.unsqueeze(1)  # (B, 1) bool
        if self.fusion == "text_only":
            fused = text_logit
        elif self.fusion == "image_only":
            fused = image_logit
        elif self.fusion == "late":
            both = self.text_weight * text_logit + self.image_weight * image_logit + self.both_bias
            fused = torch.where(t & i, both, torch.where(t, text_logit, image_logit))
        else:
            fused = self.joint_scorer(self._joint_input(text_windows, owner, image, has_text, has_image))
        return {"text": text_logit, "image": image_logit, "fused": fused}

    def _joint_input(self, text_windows, owner, image, has_text, has_image) -> torch.Tensor:
        batch = has_text.shape[0]
        text = (mean_per_owner(text_windows, owner, batch) if text_windows is not None and text_windows.shape[0]
                else has_text.new_zeros((batch, self.text_dim), dtype=torch.float32))
        if image is None:
            image = has_text.new_zeros((batch, self.image_dim), dtype=torch.float32)
        t, i = has_text.unsqueeze(1).float(), has_image.unsqueeze(1).float()
        return torch.cat([text * t, image * i, t, i], dim=1)  # (B, Dt + Di + 2)


class HeadEnsemble(nn.Module):
    """Fusion heads trained apart (each from its own seed, each stopped on its own validation score), scored as the
    mean of their logits. One head's scores on an unseen source move with its seed (the cross-source benchmark's
    seed spread); the mean of several moves less, and the heads are small, so it costs little at serving time."""

    def __init__(self, heads: list[FusionHead]):
        super().__init__()
        self.members = nn.ModuleList(heads)

    def forward(self, text_windows, owner, image, has_text, has_image) -> dict[str, torch.Tensor]:
        outs = [head(text_windows, owner, image, has_text, has_image) for head in self.members]
        return {key: torch.stack([o[key] for o in outs]).mean(0) for key in outs[0]}
