"""Embedding cache for frozen encoders, keyed by the encoder's identity and the exact inputs.

Training a head on frozen embeddings takes seconds; embedding 100k texts on 2 cores takes minutes. So a
frozen encoder's outputs are stored as safetensors files named by a hash of (encoder identity, inputs), and
a second run with the same encoder and data reads them back. Any change to the texts, image files (size and
modification time) or encoder settings changes the key.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


def _key(identity: str, items: list[str]) -> str:
    h = hashlib.sha256(identity.encode())
    for item in items:
        h.update(b"\x00" + (item or "").encode("utf-8", "surrogatepass"))
    return h.hexdigest()[:32]


def _load(path: Path) -> dict[str, np.ndarray] | None:
    from safetensors.numpy import load_file

    if not path.is_file():
        return None
    try:
        return load_file(str(path))
    except Exception as exc:  # a corrupt cache file is rebuilt, never trusted
        log.warning("ignoring unreadable cache file %s (%s)", path, exc)
        return None


def _save(path: Path, arrays: dict[str, np.ndarray]) -> None:
    from safetensors.numpy import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file(arrays, str(tmp))
    tmp.replace(path)  # atomic: a killed run never leaves a truncated cache file under the real name


def cached_text_windows(encoder, texts: list[str], cache_dir: str | Path | None, progress: bool = True,
                        device: str = "cpu"):
    """(window embeddings (W, H), owner (W,)) for texts, from the cache when present."""
    path = Path(cache_dir) / f"{_key(encoder.identity, texts)}.safetensors" if cache_dir else None
    hit = _load(path) if path else None
    if hit is not None:
        log.info("text embeddings for %d texts read from cache %s", len(texts), path.name)
        return hit["embeddings"], hit["owner"]
    embeddings, owner = encoder.encode(texts, device=device, progress=progress)
    if path:
        _save(path, {"embeddings": embeddings, "owner": owner})
    return embeddings, owner


def _image_stamp(image) -> str:
    """What identifies an image for the cache: a file by path, size and time; bytes by their hash."""
    if image is None:
        return ""
    if isinstance(image, (bytes, bytearray)):
        return "sha256:" + hashlib.sha256(image).hexdigest()
    if isinstance(image, (str, Path)):
        p = Path(image)
        stat = p.stat()
        return f"{p}:{stat.st_size}:{int(stat.st_mtime)}"
    raise TypeError(f"cannot cache features of a {type(image).__name__} image; pass a path or bytes")


def cached_image_features(encoder, paths: list, cache_dir: str | Path | None,
                          progress: bool = True) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(features (N, D) with zeros where a row has no image, extra scores such as {'nsfw': (N,)}).

    An image is a path, bytes or a PIL image (None: no image); only paths and bytes can be cached.
    """
    from tqdm.auto import tqdm

    from moderation.encoders.images import load_image

    path = Path(cache_dir) / f"{_key(encoder.identity, [_image_stamp(p) for p in paths])}.safetensors" if cache_dir else None
    hit = _load(path) if path else None
    if hit is not None:
        features = hit.pop("features")
        return features, {k.removeprefix("extra_"): v for k, v in hit.items()}
    features = np.zeros((len(paths), encoder.dim), dtype=np.float32)
    extras: dict[str, np.ndarray] = {}
    present = [i for i, p in enumerate(paths) if p is not None]
    bs = encoder.batch_size
    for start in tqdm(range(0, len(present), bs), desc="embed images", unit="batch", disable=not progress, mininterval=5):
        idx = present[start:start + bs]
        images = [load_image(paths[i]) for i in idx]
        embedded, scores = encoder.encode_with_scores(images)
        features[idx] = embedded.float().numpy()
        for name, values in scores.items():
            extras.setdefault(name, np.full(len(paths), np.nan, dtype=np.float32))[idx] = values
    if path:
        _save(path, {"features": features, **{f"extra_{k}": v for k, v in extras.items()}})
    return features, extras


def cached_ocr_text(reader, images: list, cache_dir: str | Path | None, progress: bool = True) -> list[str]:
    """The text read from each image ("" where an entry is None or nothing could be read), cached by image
    content (path stamp or bytes hash) and the reader's identity, like the image features beside it."""
    import json

    from tqdm.auto import tqdm

    from moderation.encoders.images import load_image

    path = Path(cache_dir) / f"ocr-{_key(reader.identity, [_image_stamp(p) for p in images])}.json" if cache_dir else None
    if path is not None and path.is_file():
        try:
            texts = json.loads(path.read_text())
            if isinstance(texts, list) and len(texts) == len(images):
                return texts
        except ValueError as exc:  # a corrupt cache file is rebuilt, never trusted
            log.warning("ignoring unreadable cache file %s (%s)", path, exc)
    present = [i for i, p in enumerate(images) if p is not None]
    texts = [""] * len(images)
    for i in tqdm(present, desc="read text in images", unit="image", disable=not progress, mininterval=5):
        texts[i] = reader.read_one(load_image(images[i]))
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(texts))
        tmp.replace(path)
    return texts
