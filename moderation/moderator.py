"""The public Python API: a loaded model that scores posts and decides what happens to them.

    >>> from moderation import Moderator                                   # doctest: +SKIP
    >>> m = Moderator()                    # the shipped default model     # doctest: +SKIP
    >>> m.predict("have a lovely day")     # {category: score}             # doctest: +SKIP
    >>> m.decide(["have a lovely day"])[0].action                          # doctest: +SKIP

An item is a text (`str`), an image (a `pathlib.Path`, raw `bytes` or a PIL image) or a post `dict` with an
optional `id` and a `text` and/or an `image`. Every method takes one item or a list. Scoring goes through the
library's one featurizer and `run_model`, and decisions through `moderation.policy.decide`: the same code
paths as training, evaluation and the service.
"""

from __future__ import annotations

import logging
import os
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from moderation import runfiles
from moderation.config import Config, config_from_dict, read_yaml
from moderation.features import Features, featurize
from moderation.model import ModerationModel
from moderation.policy import NO_SAMPLING, Decision, Sampling, Thresholds, decide
from moderation.scoring import ScoreArrays, run_model

log = logging.getLogger(__name__)


def load_run_config(run_dir: Path) -> Config:
    return config_from_dict(read_yaml(Path(run_dir) / runfiles.CONFIG), source=str(Path(run_dir) / runfiles.CONFIG))


class UnscorablePost(ValueError):
    """A post has nothing the model can score (e.g. only an image, for a text-only model)."""


@dataclass
class ModeratedPost:
    """One post's scores, decision and the model version that made it."""

    id: str | None
    scores: dict[str, float]  # fused, what the policy acted on
    text_scores: dict[str, float] | None
    image_scores: dict[str, float] | None
    decision: Decision
    model_version: str

    @property
    def action(self) -> str:
        return self.decision.action.value

    def to_dict(self) -> dict:
        d = self.decision
        return {"id": self.id, "action": d.action.value, "reason": d.reason.value, "drivers": list(d.drivers),
                "review_reason": d.review_reason.value if d.review_reason else None,
                "category_actions": {c: a.value for c, a in d.category_actions.items()},
                "scores": self.scores, "text_scores": self.text_scores, "image_scores": self.image_scores,
                "model_version": self.model_version}


class Moderator:
    """A run directory (default: the shipped model) loaded for scoring: encoders, head, thresholds, version."""

    def __init__(self, run: str | Path | None = None, device: str = "cpu"):
        self.run_dir = runfiles.resolve_run_dir(run)
        self.config = load_run_config(self.run_dir)
        self.model, self.meta = ModerationModel.load(self.run_dir)
        self.model.to(device)
        self.device = device
        self.categories: list[str] = self.model.categories
        self.version: str = self.meta.get("version", self.run_dir.name)
        self.thresholds: Thresholds = runfiles.read_thresholds(self.run_dir)
        self.text_encoder = self.image_encoder = None
        if self.meta["text_dim"]:
            from moderation.encoders.text import TextEncoder

            cfg = self.config.text_encoder
            finetuned = self.run_dir / runfiles.TEXT_ENCODER
            if finetuned.is_dir():
                cfg = cfg.model_copy(update={"model": str(finetuned)})
            self.text_encoder = TextEncoder(cfg).to(device)
        image_cfg = self.config.image_encoder
        reads_pictures = self.meta["image_dim"] or self.meta.get("image_branch") == "text_head"
        if reads_pictures and image_cfg.kind != "none":
            from moderation.encoders.image import build_image_encoder

            self.image_encoder = build_image_encoder(image_cfg)
        self.ocr_reader = None
        if reads_pictures and image_cfg.ocr:
            from moderation.encoders.ocr import OcrReader

            self.ocr_reader = OcrReader()

    def __repr__(self) -> str:
        return f"Moderator(version={self.version!r}, categories={self.categories}, modalities={self.modalities})"

    @property
    def modalities(self) -> list[str]:
        reads_images = self.image_encoder is not None or self.ocr_reader is not None
        return [m for m, on in (("text", self.text_encoder is not None), ("image", reads_images)) if on]

    # -- scoring -------------------------------------------------------------------------------------------
    def featurize(self, posts: list[dict]) -> Features:
        """Encoder features of posts (no cache: each post is seen once); refuses a post with nothing to score."""
        features = featurize({"text": [p.get("text") for p in posts], "image": [p.get("image") for p in posts]},
                             len(self.categories), self.text_encoder, self.image_encoder, device=self.device,
                             ocr_reader=self.ocr_reader,
                             ocr_as_image_features=self.meta.get("image_branch", "trained") == "trained")
        for post, t, i in zip(posts, features.has_text, features.has_image):
            if not (t or i):
                has = "an image" if post.get("image") is not None else "no text"
                raise UnscorablePost(f"post {post.get('id')!r}: nothing this model can score (it scores "
                                     f"{' and '.join(self.modalities)}; the post has {has})")
        return features

    def score_arrays(self, items, batch_size: int = 64, progress: bool = False) -> ScoreArrays:
        """(N, C) fused, text-only and image-only probabilities, in input order, `batch_size` posts at a time."""
        from tqdm.auto import tqdm

        posts = as_posts(items)
        parts = [run_model(self.model, self.featurize(posts[start:start + batch_size]), device=self.device)
                 for start in tqdm(range(0, len(posts), batch_size), desc="score", unit="batch",
                                   disable=not progress, mininterval=5)]
        return ScoreArrays.concatenate(parts, self.categories)

    def score(self, items, batch_size: int = 64) -> list[dict] | dict:
        """[{"id", "scores", "text_scores", "image_scores", "modality", "ocr_text"}] ({category: p}; None for an
        absent modality; `modality`: which one drove each category; `ocr_text`: what was read in the picture)."""
        posts = as_posts(items)
        arrays = self.score_arrays(posts, batch_size)
        results = [{"id": p.get("id"), **arrays.post(i)} for i, p in enumerate(posts)]
        return results[0] if _single(items) else results

    def predict(self, items, batch_size: int = 64) -> dict[str, float] | dict[str, list[float]]:
        """Fused scores: {category: score} for one item, {category: [scores]} for a list (input order)."""
        fused = self.score_arrays(items, batch_size).fused
        if _single(items):
            return {c: float(fused[0, j]) for j, c in enumerate(self.categories)}
        return {c: fused[:, j].astype(float).tolist() for j, c in enumerate(self.categories)}

    def predict_proba(self, items) -> np.ndarray:
        """sklearn-style: (N, C) fused probabilities ((C,) for one item), columns in `categories` order."""
        fused = self.score_arrays(items).fused
        return fused[0] if _single(items) else fused

    def decide(self, items, sampling: Sampling = NO_SAMPLING, rng: random.Random | None = None,
               batch_size: int = 64) -> list[ModeratedPost] | ModeratedPost:
        """Scores and the policy's decision (action, reason, driving categories) with the model version."""
        out = []
        for result in self.score(as_posts(items), batch_size):
            decision = decide(result["scores"], self.thresholds, sampling, rng)
            out.append(ModeratedPost(result["id"], result["scores"], result["text_scores"], result["image_scores"],
                                     decision, self.version))
        return out[0] if _single(items) else out


def _single(items) -> bool:
    return not isinstance(items, (list, tuple))


def as_post(item, index: int = 0) -> dict:
    """Normalise one item to a post dict {"id", "text", "image"} (see the module docstring)."""
    if isinstance(item, dict):
        unknown = set(item) - {"id", "text", "image"}
        if not ({"text", "image"} & set(item)):
            raise ValueError(f"item {index}: a post dict needs 'text' and/or 'image' (got keys {sorted(item)})")
        post = {k: v for k, v in item.items() if k not in unknown}
        post.setdefault("id", str(index))
        return post
    if isinstance(item, str):
        return {"id": str(index), "text": item, "image": None}
    if isinstance(item, (bytes, bytearray, os.PathLike)):
        return {"id": str(index), "text": None, "image": bytes(item) if not isinstance(item, os.PathLike) else str(item)}
    try:
        from PIL import Image

        if isinstance(item, Image.Image):
            return {"id": str(index), "text": None, "image": item}
    except ImportError:  # pragma: no cover - Pillow is a dependency
        pass
    raise TypeError(f"item {index}: expected a text, an image (Path, bytes or PIL image) or a post dict, "
                    f"got {type(item).__name__}")


def as_posts(items) -> list[dict]:
    if isinstance(items, (list, tuple)):
        return [as_post(item, i) for i, item in enumerate(items)]
    return [as_post(items)]
