"""The trained part of a moderation model: fusion head + zero-shot scorer + prior correction.

It works on encoder outputs (text window embeddings, image features), so the same object serves the
cached-embedding training path, fine-tuning (where the encoder runs in the loop) and prediction.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from moderation import runfiles
from moderation.fusion import FusionHead
from moderation.zeroshot import ZeroShotScorer


class ModerationModel(nn.Module):
    def __init__(self, categories: list[str], fusion: str, text_dim: int, image_dim: int, hidden_dim: int = 0,
                 dropout: float = 0.1, zero_shot: ZeroShotScorer | None = None):
        super().__init__()
        self.categories = list(categories)
        self.head = FusionHead(fusion, text_dim, image_dim, len(categories), hidden_dim, dropout)
        self.zero_shot = zero_shot
        # Added to trained classes' logits at prediction time (log of the negative-sampling rate).
        self.register_buffer("prior_offset", torch.zeros(len(categories)))
        # A class scored on images by the open_nsfw probability (zero-shot), or None.
        self.nsfw_class: int | None = None
        self.meta: dict = {"fusion": fusion, "text_dim": text_dim, "image_dim": image_dim,
                           "hidden_dim": hidden_dim, "dropout": dropout}

    def forward(self, text_windows, owner, image, has_text, has_image, nsfw=None, for_prediction: bool = False):
        """Logits {"text", "image", "fused"} (B, C). `for_prediction` applies zero-shot and prior correction."""
        logits = self.head(text_windows, owner, image, has_text, has_image)
        if not for_prediction:
            return logits
        offset = self.prior_offset
        text, image_l, fused = logits["text"] + offset, logits["image"] + offset, logits["fused"] + offset
        if self.zero_shot is not None and bool(self.zero_shot.active.any()) and text_windows is not None:
            batch = has_text.shape[0]
            zs = self.zero_shot.logit(self.zero_shot.similarity(text_windows, owner, batch))  # (B, C)
            use = self.zero_shot.active.unsqueeze(0) & has_text.unsqueeze(1)  # (B, C)
            text = torch.where(self.zero_shot.active.unsqueeze(0), zs, text)
            fused = torch.where(use, zs, fused)
        if self.nsfw_class is not None and nsfw is not None:
            # The open_nsfw detector can raise the class's score on an image, never lower it.
            c, z = self.nsfw_class, torch.logit(nsfw.float().clamp(1e-6, 1 - 1e-6))
            image_l, fused = image_l.clone(), fused.clone()
            image_l[:, c] = torch.where(has_image, z, image_l[:, c])
            fused[:, c] = torch.where(has_image, torch.maximum(fused[:, c], z), fused[:, c])
        return {"text": text, "image": image_l, "fused": fused}

    def save(self, run_dir: Path, extra_meta: dict) -> None:
        from safetensors.torch import save_file

        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        save_file(state, str(Path(run_dir) / runfiles.HEAD))
        meta = {**self.meta, "categories": self.categories, "has_zero_shot": self.zero_shot is not None,
                "nsfw_class": self.nsfw_class,
                "num_prototypes": int(self.zero_shot.prototypes.shape[0]) if self.zero_shot is not None else 0,
                **extra_meta}
        runfiles.write_json(Path(run_dir) / runfiles.MODEL, meta)

    @classmethod
    def load(cls, run_dir: Path) -> tuple[ModerationModel, dict]:
        from safetensors.torch import load_file

        meta = runfiles.read_json(Path(run_dir) / runfiles.MODEL)
        state = load_file(str(Path(run_dir) / runfiles.HEAD))
        zero_shot = None
        if meta["has_zero_shot"]:
            zero_shot = ZeroShotScorer(state["zero_shot.prototypes"], state["zero_shot.prototype_class"],
                                       len(meta["categories"]))
        model = cls(meta["categories"], meta["fusion"], meta["text_dim"], meta["image_dim"], meta["hidden_dim"],
                    meta["dropout"], zero_shot)
        model.load_state_dict(state)
        model.nsfw_class = meta.get("nsfw_class")
        model.eval()
        return model, meta
