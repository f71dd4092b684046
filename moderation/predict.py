"""Prediction: a run directory (or the shipped default model) -> per-category scores for posts.

`Moderator` is the small public API: `Moderator(run_dir).score(posts)`, where a post is a dict with an
`id` and a `text` and/or an `image` (a path, raw bytes or a PIL image). Each result carries the fused score
per category and, side by side, the text-only and image-only scores (None for an absent modality).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from moderation import runfiles
from moderation.config import Config, config_from_dict, read_yaml
from moderation.features import Features, offsets_from_owner
from moderation.model import ModerationModel

log = logging.getLogger(__name__)


def load_run_config(run_dir: Path) -> Config:
    return config_from_dict(read_yaml(Path(run_dir) / runfiles.CONFIG), source=str(Path(run_dir) / runfiles.CONFIG))


class Moderator:
    """A loaded model: encoders + trained head + per-class thresholds and its version."""

    def __init__(self, run_dir: str | Path | None = None, device: str = "cpu"):
        self.run_dir = runfiles.resolve_run_dir(run_dir)
        self.config = load_run_config(self.run_dir)
        self.model, self.meta = ModerationModel.load(self.run_dir)
        self.model.to(device)
        self.device = device
        self.categories = self.model.categories
        self.version = self.meta.get("version", self.run_dir.name)
        self.thresholds = runfiles.read_thresholds(self.run_dir)
        self.text_encoder = self.image_encoder = None
        if self.meta["text_dim"]:
            from moderation.encoders.text import TextEncoder

            cfg = self.config.text_encoder
            finetuned = self.run_dir / runfiles.TEXT_ENCODER
            if finetuned.is_dir():
                cfg = cfg.model_copy(update={"model": str(finetuned)})
            self.text_encoder = TextEncoder(cfg).to(device)
        if self.meta["image_dim"]:
            from moderation.encoders.image import build_image_encoder

            self.image_encoder = build_image_encoder(self.config.image_encoder)

    @property
    def modalities(self) -> list[str]:
        return [m for m, enc in (("text", self.text_encoder), ("image", self.image_encoder)) if enc is not None]

    def features(self, posts: list[dict]) -> Features:
        """Encode a batch of posts (no cache: serving and prediction see each post once)."""
        n, num_classes = len(posts), len(self.categories)
        texts = [(p.get("text") or "").strip() for p in posts]
        has_text = np.array([bool(t) for t in texts]) & (self.text_encoder is not None)
        has_image = np.array([p.get("image") is not None for p in posts]) & (self.image_encoder is not None)
        for post, t, i in zip(posts, has_text, has_image):
            if not (t or i):
                raise ValueError(f"post {post.get('id')!r}: nothing this model can score "
                                 f"(it scores {' and '.join(self.modalities)}; the post has "
                                 f"{'an image' if post.get('image') is not None else 'no text'})")
        windows, owner = (np.zeros((0, self.model.meta["text_dim"]), np.float32), np.zeros(0, np.int64))
        if self.text_encoder is not None:
            windows, owner = self.text_encoder.encode(texts, device=self.device)
        image, extras = None, {}
        if self.image_encoder is not None:
            image = np.zeros((n, self.image_encoder.dim), np.float32)
            idx = np.flatnonzero(has_image)
            if idx.size:
                from moderation.encoders.images import load_image

                pictures = [load_image(posts[i]["image"]) for i in idx]
                embedded, scores = self.image_encoder.encode_with_scores(pictures)
                image[idx] = embedded.float().numpy()
                for name, values in scores.items():
                    extras.setdefault(name, np.full(n, np.nan, np.float32))[idx] = values
        return Features(windows=windows, offsets=offsets_from_owner(owner, n), image=image, has_text=has_text,
                        has_image=has_image, labels=np.zeros((n, num_classes), np.float32),
                        label_mask=np.zeros((n, num_classes), bool), extras=extras)

    @torch.inference_mode()
    def score(self, posts: list[dict]) -> list[dict]:
        """[{"id", "scores": {cat: p}, "text_scores": {..} | None, "image_scores": {..} | None}] in input order."""
        if not posts:
            return []
        feats = self.features(posts)
        logits = self.model(**feats.batch(np.arange(len(posts)), self.device), for_prediction=True)
        probs = {k: torch.sigmoid(v).float().cpu().numpy() for k, v in logits.items()}
        results = []
        for i, post in enumerate(posts):
            as_dict = lambda key: {c: round(float(probs[key][i, j]), 6) for j, c in enumerate(self.categories)}
            results.append({
                "id": post.get("id"),
                "scores": as_dict("fused"),
                "text_scores": as_dict("text") if feats.has_text[i] else None,
                "image_scores": as_dict("image") if feats.has_image[i] else None,
            })
        return results

    def predict_proba(self, texts: str | list[str]) -> np.ndarray:
        """sklearn-style: (N, C) fused probabilities for one text or a list of texts."""
        single = isinstance(texts, str)
        rows = self.score([{"id": str(i), "text": t} for i, t in enumerate([texts] if single else texts)])
        out = np.array([[r["scores"][c] for c in self.categories] for r in rows], dtype=np.float32)
        return out[0] if single else out
