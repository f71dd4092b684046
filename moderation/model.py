"""The trained part of a moderation model: fusion head + zero-shot scorer + prior correction + lexical blend.

It works on encoder outputs (text window embeddings, image features), so the same object serves the
cached-embedding training path, fine-tuning (where the encoder runs in the loop) and prediction.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from moderation import runfiles
from moderation.fusion import FusionHead, HeadEnsemble
from moderation.zeroshot import ZeroShotScorer


# Logit of a picture in which nothing could be read (text_head models): no evidence, probability ~0.
NO_EVIDENCE = -20.0


class ModerationModel(nn.Module):
    def __init__(self, categories: list[str], fusion: str, text_dim: int, image_dim: int, hidden_dim: int = 0,
                 dropout: float = 0.1, zero_shot: ZeroShotScorer | None = None, image_branch: str = "trained",
                 caption_picture_rule: str = "max", members: int = 1):
        super().__init__()
        self.categories = list(categories)
        # text_head: pictures are scored through the text head (their OCR text), never by image features.
        self.image_branch, self.caption_picture_rule = image_branch, caption_picture_rule
        head_image_dim = 0 if image_branch == "text_head" else image_dim
        self.meta: dict = {"fusion": fusion, "text_dim": text_dim, "image_dim": head_image_dim,
                           "hidden_dim": hidden_dim, "dropout": dropout, "image_branch": image_branch,
                           "caption_picture_rule": caption_picture_rule}
        self.use_heads([FusionHead(fusion, text_dim, head_image_dim, len(categories), hidden_dim, dropout)
                        for _ in range(members)])
        self.zero_shot = zero_shot
        # Added to trained classes' logits at prediction time (log of the negative-sampling rate).
        self.register_buffer("prior_offset", torch.zeros(len(categories)))
        # Per class, the share of a text's logit that comes from the lexical view (`moderation.lexical`) at
        # prediction time: (1 - w) * head + w * lexical. 0 (no lexical view, or a zero-shot class): the head's alone.
        self.register_buffer("lexical_weight", torch.zeros(len(categories)))
        # A class scored on images by the open_nsfw probability (zero-shot), or None.
        self.nsfw_class: int | None = None

    def forward(self, text_windows, owner, image, has_text, has_image, nsfw=None, ocr_windows=None, ocr_owner=None,
                has_ocr=None, lexical=None, ocr_lexical=None, for_prediction: bool = False):
        """Logits {"text", "image", "fused"} (B, C). `for_prediction` applies the prior correction, the lexical
        blend (`lexical`, `ocr_lexical`: (B, C) lexical logits of the caption and the picture's text) and zero-shot
        scoring; training sees the head's own logits."""
        if self.image_branch == "text_head":
            return self._text_head_forward(text_windows, owner, has_text, has_image, nsfw, ocr_windows, ocr_owner,
                                           has_ocr, lexical, ocr_lexical, for_prediction)
        logits = self.head(text_windows, owner, image, has_text, has_image)
        if not for_prediction:
            return logits
        offset = self.prior_offset
        text, image_l, fused = logits["text"] + offset, logits["image"] + offset, logits["fused"] + offset
        if self.meta["fusion"] in ("text_only", "late") and self.uses_lexical:
            # The config allows a lexical view only where no image branch is trained: a post's score is its text's.
            text = self._with_lexical(text, lexical)
            fused = torch.where(has_image.unsqueeze(1), fused, text)
        if self._zero_shot_on():
            zs = self._zero_shot_logits(text_windows, owner, has_text.shape[0])
            active = self.zero_shot.active.unsqueeze(0)
            text = torch.where(active, zs, text)
            fused = torch.where(active & has_text.unsqueeze(1), zs, fused)
        if self.nsfw_class is not None and nsfw is not None:
            # The open_nsfw detector can raise the class's score on an image, never lower it.
            c, z = self.nsfw_class, torch.logit(nsfw.float().clamp(1e-6, 1 - 1e-6))
            image_l, fused = image_l.clone(), fused.clone()
            image_l[:, c] = torch.where(has_image, z, image_l[:, c])
            fused[:, c] = torch.where(has_image, torch.maximum(fused[:, c], z), fused[:, c])
        return {"text": text, "image": image_l, "fused": fused}

    def use_heads(self, heads: list[FusionHead]) -> None:
        """Score with `heads`: one, or the mean of several trained apart (`moderation.train`)."""
        self.head: FusionHead | HeadEnsemble = heads[0] if len(heads) == 1 else HeadEnsemble(heads)
        self.meta["members"] = len(heads)

    @property
    def uses_lexical(self) -> bool:
        return bool(self.lexical_weight.any())

    def _with_lexical(self, logit: torch.Tensor, lexical: torch.Tensor | None) -> torch.Tensor:
        if not self.uses_lexical:
            return logit
        if lexical is None:
            raise ValueError("this model blends a lexical view into its text scores: featurize with its lexical "
                             "model (`featurize(..., lexical_model=...)`, as `Moderator` does)")
        return logit + self.lexical_weight * (lexical - logit)

    def _zero_shot_on(self) -> bool:
        return self.zero_shot is not None and bool(self.zero_shot.active.any())

    def _zero_shot_logits(self, windows, owner, batch: int) -> torch.Tensor:
        if windows is None or not windows.shape[0]:
            return torch.full((batch, len(self.categories)), NO_EVIDENCE, device=self.prior_offset.device)
        return self.zero_shot.logit(self.zero_shot.similarity(windows, owner, batch))  # (B, C)

    def _scored_text(self, windows, owner, present, batch: int, lexical, for_prediction: bool) -> torch.Tensor:
        """(B, C) text-head logits of window sets (captions, or the text read from pictures), blended with their
        lexical logits at prediction time."""
        if windows is None or not windows.shape[0]:
            return torch.full((batch, len(self.categories)), NO_EVIDENCE, device=self.prior_offset.device)
        logit = self.head.forward(windows, owner, None, present, torch.zeros_like(present))["text"]
        if for_prediction:
            logit = self._with_lexical(logit + self.prior_offset, lexical)
            if self._zero_shot_on():
                logit = torch.where(self.zero_shot.active.unsqueeze(0), self._zero_shot_logits(windows, owner, batch),
                                    logit)
        return torch.where(present.unsqueeze(1), logit, torch.full_like(logit, NO_EVIDENCE))

    def _text_head_forward(self, text_windows, owner, has_text, has_image, nsfw, ocr_windows, ocr_owner, has_ocr,
                           lexical, ocr_lexical, for_prediction: bool) -> dict[str, torch.Tensor]:
        batch = has_text.shape[0]
        text = self._scored_text(text_windows, owner, has_text, batch, lexical, for_prediction)
        if has_ocr is None:
            has_ocr = torch.zeros_like(has_text)
        picture = self._scored_text(ocr_windows, ocr_owner, has_ocr & has_image, batch, ocr_lexical, for_prediction)
        if self.nsfw_class is not None and nsfw is not None:
            c, z = self.nsfw_class, torch.logit(nsfw.float().clamp(1e-6, 1 - 1e-6))
            # Rebuilt rather than written in place: training backpropagates through `torch.maximum`.
            column = torch.where(has_image, torch.maximum(picture[:, c], z), picture[:, c])
            picture = torch.cat([picture[:, :c], column.unsqueeze(1), picture[:, c + 1:]], dim=1)
        t, i = has_text.unsqueeze(1), has_image.unsqueeze(1)
        both = combine_evidence(text, picture, self.caption_picture_rule)
        fused = torch.where(t & i, both, torch.where(t, text, picture))
        return {"text": text, "image": picture, "fused": fused}

    def save(self, run_dir: Path, extra_meta: dict) -> None:
        from safetensors.torch import save_file

        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        save_file(state, str(Path(run_dir) / runfiles.HEAD))
        meta = {**self.meta, "categories": self.categories, "has_zero_shot": self.zero_shot is not None,
                "nsfw_class": self.nsfw_class,
                "num_prototypes": int(self.zero_shot.prototypes.shape[0]) if self.zero_shot is not None else 0,
                "zero_shot_similarity_dims": self.zero_shot.similarity_dims if self.zero_shot is not None else None,
                "zero_shot_contrast_weight": self.zero_shot.contrast_weight if self.zero_shot is not None else 0.0,
                "lexical": self.uses_lexical, **extra_meta}
        runfiles.write_json(Path(run_dir) / runfiles.MODEL, meta)

    @classmethod
    def load(cls, run_dir: Path) -> tuple[ModerationModel, dict]:
        from safetensors.torch import load_file

        meta = runfiles.read_json(Path(run_dir) / runfiles.MODEL)
        state = load_file(str(Path(run_dir) / runfiles.HEAD))
        zero_shot = None
        if meta["has_zero_shot"]:
            zero_shot = ZeroShotScorer(state["zero_shot.prototypes"], state["zero_shot.prototype_class"],
                                       len(meta["categories"]), meta.get("zero_shot_similarity_dims"),
                                       state.get("zero_shot.contrast"),  # runs from before benign twins: none
                                       meta.get("zero_shot_contrast_weight", 0.0))
        model = cls(meta["categories"], meta["fusion"], meta["text_dim"], meta["image_dim"], meta["hidden_dim"],
                    meta["dropout"], zero_shot, meta.get("image_branch", "trained"),
                    meta.get("caption_picture_rule", "max"), meta.get("members", 1))
        state.setdefault("lexical_weight", torch.zeros(len(meta["categories"])))  # runs from before the lexical view
        if zero_shot is not None:
            state.setdefault("zero_shot.contrast", zero_shot.contrast)
        model.load_state_dict(state)
        model.nsfw_class = meta.get("nsfw_class")
        model.eval()
        return model, meta


def combine_evidence(a: torch.Tensor, b: torch.Tensor, rule: str) -> torch.Tensor:
    """Per-class logit from two independent pieces of evidence (caption, picture): "max" keeps the stronger,
    "noisy_or" is P(either) = 1 - (1 - p_a)(1 - p_b), computed in log space so extreme logits stay finite.

    >>> combine_evidence(torch.tensor([0.0]), torch.tensor([0.0]), "noisy_or")  # 1 - 0.5 * 0.5 = 0.75
    tensor([1.0986])
    """
    if rule == "max":
        return torch.maximum(a, b)
    if rule == "noisy_or":
        log_neither = F.logsigmoid(-a) + F.logsigmoid(-b)  # log P(neither)
        return torch.log(-torch.expm1(log_neither).clamp(max=-1e-12)) - log_neither
    raise ValueError(f"caption_picture_rule: {rule!r} is not one of ('max', 'noisy_or')")
