"""What the model reads of a post's text: the one preparation the text encoder and the lexical view share.

Platform markup comes out first (`moderation.encoders.markup`, when `text_encoder.platform_markup: strip`), then
the evasion normaliser undoes rewrites (`moderation.encoders.normalize`, when `text_encoder.normalize`). Both
views calling this one function is what keeps them reading the same words, in training and in serving.
"""

from __future__ import annotations

from collections.abc import Sequence

from moderation.encoders.markup import strip_platform_markup
from moderation.encoders.normalize import normalize_text


def model_texts(texts: Sequence[str | None], normalize: bool, strip_markup: bool) -> list[str]:
    """`texts` as the model reads them (None becomes "")."""
    out = ["" if t is None else str(t) for t in texts]
    if strip_markup:
        out = [strip_platform_markup(t) for t in out]
    if normalize:
        out = [normalize_text(t) if t else t for t in out]
    return out


__all__ = ["model_texts"]
