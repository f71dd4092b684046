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
from moderation.features import Features, featurize, is_blank_image
from moderation.lexical import load_for_run as load_lexical
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
    modality: dict[str, str] | None = None  # per category, the modality that drove it
    ocr_text: str | None = None  # the text read from the picture

    @property
    def action(self) -> str:
        return self.decision.action.value

    def to_dict(self) -> dict:
        d = self.decision
        return {"id": self.id, "action": d.action.value, "reason": d.reason.value, "drivers": list(d.drivers),
                "review_reason": d.review_reason.value if d.review_reason else None,
                "category_actions": {c: a.value for c, a in d.category_actions.items()},
                "scores": self.scores, "text_scores": self.text_scores, "image_scores": self.image_scores,
                "modality": self.modality, "ocr_text": self.ocr_text, "model_version": self.model_version}


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
        # The text encoder reads captions (text_dim > 0) and, with OCR, the text in pictures.
        if self.meta["text_dim"] or (self.config.image_encoder.ocr and (self.meta["image_dim"]
                                                                       or self.meta.get("image_branch") == "text_head")):
            from moderation.encoders.text import run_text_encoder

            self.text_encoder = run_text_encoder(self.config.text_encoder, self.run_dir / runfiles.TEXT_ENCODER).to(device)
        image_cfg = self.config.image_encoder
        reads_pictures = self.meta["image_dim"] or self.meta.get("image_branch") == "text_head"
        if reads_pictures and image_cfg.kind != "none":
            from moderation.encoders.image import build_image_encoder

            self.image_encoder = build_image_encoder(image_cfg)
        # The lexical view (hashed n-gram regressions) whose logits the model blends with its text head's.
        self.lexical_model = load_lexical(self.run_dir, self.meta)
        self.ocr_reader = None
        if reads_pictures:
            from moderation.encoders.ocr import build_ocr_reader

            self.ocr_reader = build_ocr_reader(image_cfg)

    def __repr__(self) -> str:
        return f"Moderator(version={self.version!r}, categories={self.categories}, modalities={self.modalities})"

    @property
    def modalities(self) -> list[str]:
        reads_captions = self.text_encoder is not None and self.meta["text_dim"] > 0
        reads_images = self.image_encoder is not None or self.ocr_reader is not None
        return [m for m, on in (("text", reads_captions), ("image", reads_images)) if on]

    # -- scoring -------------------------------------------------------------------------------------------
    def why_unscorable(self, post: dict) -> str | None:
        """Why the model cannot score this post (None when it can): no text it reads, no picture it reads."""
        text, image = (post.get("text") or "").strip(), post.get("image")
        has_image = image is not None and not is_blank_image(image)
        if (text and "text" in self.modalities) or (has_image and "image" in self.modalities):
            return None
        has = "an image" if has_image else "no text" if not text else "only text"
        return f"nothing this model can score (it scores {' and '.join(self.modalities)}; the post has {has})"

    def _checked(self, post: dict) -> tuple[dict, str | None]:
        """The post with its picture decoded (once, here, where the model reads pictures), or why it cannot be
        scored. A picture that cannot be decoded makes the post unscorable rather than silently text-only."""
        from moderation.encoders.images import ImageError, load_image

        reason = self.why_unscorable(post)
        image = post.get("image")
        if reason is None and image is not None and "image" in self.modalities and not is_blank_image(image):
            try:
                post = {**post, "image": load_image(image)}
            except ImageError as exc:
                reason = f"image: {exc}"
        return post, reason

    def featurize(self, posts: list[dict]) -> Features:
        """Encoder features of checked posts (no cache: serving and prediction see each post once)."""
        reads_captions = "text" in self.modalities  # an image-only model ignores captions
        return featurize({"text": [p.get("text") if reads_captions else None for p in posts],
                          "image": [p.get("image") for p in posts]},
                         len(self.categories), self.text_encoder, self.image_encoder, device=self.device,
                         ocr_reader=self.ocr_reader,
                         ocr_as_image_features=self.meta.get("image_branch", "trained") == "trained",
                         lexical_model=self.lexical_model)

    def score_arrays(self, items, batch_size: int = 64, progress: bool = False) -> ScoreArrays:
        """(N, C) fused, text-only and image-only probabilities, in input order, `batch_size` posts at a time.
        Raises `UnscorablePost` (naming the post and why) before any encoding when a post cannot be scored."""
        from tqdm.auto import tqdm

        posts = []
        for post in as_posts(items):
            post, reason = self._checked(post)
            if reason is not None:
                raise UnscorablePost(f"post {post.get('id')!r}: {reason}")
            posts.append(post)
        parts = [run_model(self.model, self.featurize(posts[start:start + batch_size]), device=self.device)
                 for start in tqdm(range(0, len(posts), batch_size), desc="score", unit="batch",
                                   disable=not progress, mininterval=5)]
        return ScoreArrays.concatenate(parts, self.categories)

    def score(self, items, batch_size: int = 64, unscorable: str = "raise", progress: bool = False) -> list[dict] | dict:
        """[{"id", "scores", "text_scores", "image_scores", "modality", "ocr_text"}] ({category: p}; None for an
        absent modality; `modality`: which one drove each category; `ocr_text`: what was read in the picture).

        `unscorable="mark"` answers a post the model cannot score with {"id", "error": why} and scores the rest
        (batch prediction goes on); "raise" (default) raises `UnscorablePost`.
        """
        if unscorable not in ("raise", "mark"):
            raise ValueError(f"unscorable={unscorable!r}: expected 'raise' or 'mark'")
        checked = [self._checked(post) for post in as_posts(items)]
        bad = [(post, reason) for post, reason in checked if reason is not None]
        if bad and unscorable == "raise":
            raise UnscorablePost(f"post {bad[0][0].get('id')!r}: {bad[0][1]}")
        good = [post for post, reason in checked if reason is None]
        arrays = self.score_arrays(good, batch_size, progress) if good else None
        results, k = [], 0
        for post, reason in checked:
            if reason is not None:
                results.append({"id": post.get("id"), "error": reason})
            else:
                results.append({"id": post.get("id"), **arrays.post(k)})
                k += 1
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
                                     decision, self.version, result["modality"], result["ocr_text"]))
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
