"""The one function that runs a model on features, and the arrays it returns.

Training (validation every epoch), prediction, evaluation, audits, retraining, bulk scoring and serving all
go through `run_model`, so zero-shot scoring, the prior correction and the sigmoid are applied in one place.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from moderation.features import Features

MODALITIES = ("fused", "text", "image")


@dataclass
class ScoreArrays:
    """Probabilities per post and category: fused (what the policy acts on), text-only and image-only."""

    categories: list[str]
    fused: np.ndarray  # (N, C) float32
    text: np.ndarray  # (N, C) float32; meaningless where has_text is False
    image: np.ndarray  # (N, C) float32; meaningless where has_image is False
    has_text: np.ndarray  # (N,) bool
    has_image: np.ndarray  # (N,) bool
    ocr_text: list[str] | None = None  # (N,) the text read from each picture; None when the model reads none

    def __len__(self) -> int:
        return len(self.fused)

    def driving_modality(self, i: int) -> dict[str, str]:
        """Per category, the modality whose own score is higher ("text" or "image"); the only one when a post
        has one."""
        if not self.has_image[i]:
            return {c: "text" for c in self.categories}
        if not self.has_text[i]:
            return {c: "image" for c in self.categories}
        return {c: "text" if self.text[i, j] >= self.image[i, j] else "image" for j, c in enumerate(self.categories)}

    def post(self, i: int) -> dict:
        """One post's scores as {"scores", "text_scores", "image_scores"} ({category: p}, None when absent),
        the driving modality per category, and the text read from its picture (None without OCR or picture)."""
        as_dict = lambda a: {c: round(float(a[i, j]), 6) for j, c in enumerate(self.categories)}
        return {"scores": as_dict(self.fused),
                "text_scores": as_dict(self.text) if self.has_text[i] else None,
                "image_scores": as_dict(self.image) if self.has_image[i] else None,
                "modality": self.driving_modality(i),
                "ocr_text": self.ocr_text[i] if self.ocr_text is not None and self.has_image[i] else None}

    @classmethod
    def concatenate(cls, parts: list[ScoreArrays], categories: list[str]) -> ScoreArrays:
        if not parts:
            empty = np.zeros((0, len(categories)), np.float32)
            return cls(list(categories), empty, empty.copy(), empty.copy(), np.zeros(0, bool), np.zeros(0, bool))
        ocr = None if parts[0].ocr_text is None else [t for p in parts for t in p.ocr_text]
        return cls(list(categories), *(np.concatenate([getattr(p, k) for p in parts])
                                       for k in (*MODALITIES, "has_text", "has_image")), ocr_text=ocr)


@torch.inference_mode()
def run_model(model, features: Features, batch_size: int = 2048, device: str = "cpu") -> ScoreArrays:
    """(N, C) probabilities of `model` (a ModerationModel) on `features`, zero-shot and prior correction applied."""
    model.eval()
    out = {k: [] for k in MODALITIES}
    for start in range(0, len(features), batch_size):
        idx = np.arange(start, min(start + batch_size, len(features)))
        logits = model(**features.batch(idx, device), for_prediction=True)
        for k in out:
            out[k].append(torch.sigmoid(logits[k]).float().cpu().numpy())
    empty = np.zeros((0, len(model.categories)), np.float32)
    arrays = {k: np.concatenate(v) if v else empty for k, v in out.items()}
    return ScoreArrays(list(model.categories), arrays["fused"], arrays["text"], arrays["image"],
                       features.has_text.copy(), features.has_image.copy(),
                       list(features.ocr_text) if features.ocr_text is not None else None)
