"""Embedding cache for frozen encoders, keyed by the encoder's identity and the inputs.

Training a head on frozen embeddings takes seconds; embedding 100k texts on 2 cores takes minutes. So a
frozen encoder's outputs are stored as safetensors files and a later run with the same encoder reads them
back. Any change to the encoder settings changes the identity, so nothing stale is ever read.

Texts are cached one by one (`TextWindowStore`: one folder per encoder identity, shards of windows keyed by
each text's hash), so a run whose splits hold the same texts in other groupings (a cross-source fold, a
retrain with reviewed posts added, another split seed) embeds only the texts never seen before. The text
read from images is cached image by image, the same way; image features are cached per list (keyed by the
files' size and modification time).
"""

from __future__ import annotations

import hashlib
import logging
import uuid
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
    """(window embeddings (W, H), owner (W,)) for texts; only texts the store has not seen are embedded."""
    if not cache_dir:
        return encoder.encode(texts, device=device, progress=progress)
    store = TextWindowStore(Path(cache_dir) / f"text-{_key(encoder.identity, [])}")
    return store.windows(texts, lambda missing: encoder.encode(missing, device=device, progress=progress))


class TextWindowStore:
    """Window embeddings of single texts for one encoder identity, in append-only safetensors shards.

    A shard holds `keys` (K, 16) uint8 (the texts' hashes), `counts` (K,) windows per text and `embeddings`
    (sum of counts, H), the windows of its texts in order. Each call that meets new texts writes one new shard
    (atomically, under a unique name), so concurrent writers never clobber each other; a text present in two
    shards is read from either (both hold the same encoder's output).
    """

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    @staticmethod
    def text_key(text: str) -> bytes:
        return hashlib.sha256((text or "").encode("utf-8", "surrogatepass")).digest()[:16]

    def _shards(self) -> list[dict[str, np.ndarray]]:
        shards = []
        for path in sorted(self.folder.glob("*.safetensors")):
            shard = _load(path)
            if shard is not None and {"keys", "counts", "embeddings"} <= set(shard):
                shards.append(shard)
        return shards

    def windows(self, texts: list[str], encode) -> tuple[np.ndarray, np.ndarray]:
        """(embeddings (W, H), owner (W,)) for `texts` in order; `encode(missing texts)` embeds the rest."""
        keys = [self.text_key(t) for t in texts]
        shards = self._shards()
        index: dict[bytes, tuple[int, int, int]] = {}  # key -> (shard, first window, windows)
        for s, shard in enumerate(shards):
            starts = np.concatenate([[0], np.cumsum(shard["counts"])[:-1]]).astype(np.int64)
            for key, start, count in zip(shard["keys"], starts, shard["counts"]):
                index[key.tobytes()] = (s, int(start), int(count))
        missing = list(dict.fromkeys(k for k in keys if k not in index))
        if missing:
            first_text = {}
            for k, t in zip(keys, texts):
                first_text.setdefault(k, t)
            embeddings, owner = encode([first_text[k] for k in missing])
            counts = np.bincount(owner, minlength=len(missing)).astype(np.int64)
            shard = {"keys": np.frombuffer(b"".join(missing), np.uint8).reshape(-1, 16),
                     "counts": counts, "embeddings": np.ascontiguousarray(embeddings)}
            order = np.argsort(owner, kind="stable")  # windows grouped by text, in text order
            shard["embeddings"] = np.ascontiguousarray(embeddings[order])
            _save(self.folder / f"{uuid.uuid4().hex}.safetensors", shard)
            starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
            shards.append(shard)
            for key, start, count in zip(missing, starts, counts):
                index[key] = (len(shards) - 1, int(start), int(count))
            log.info("embedded %d new texts; %d read from the store %s", len(missing), len(set(keys)) - len(missing),
                     self.folder.name)
        else:
            log.info("text embeddings for %d texts read from the store %s", len(texts), self.folder.name)
        parts, owner = [], []
        for i, key in enumerate(keys):
            s, start, count = index[key]
            parts.append(shards[s]["embeddings"][start:start + count])
            owner.append(np.full(count, i, dtype=np.int64))
        dim = shards[0]["embeddings"].shape[1] if shards else 0
        embeddings = np.concatenate(parts) if parts else np.zeros((0, dim), np.float32)
        return embeddings, (np.concatenate(owner) if owner else np.zeros(0, np.int64))


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
    """The text read from each image ("" where an entry is None or nothing could be read), cached image by
    image (path stamp or bytes hash) under the reader's identity: OCR costs about a second per picture on 2
    cores, and cross-source folds group the same pictures into other splits, so a per-list key would read
    them all again in every fold."""
    import json

    from tqdm.auto import tqdm

    from moderation.encoders.images import load_image

    stamps = [_image_stamp(p) for p in images] if cache_dir else [""] * len(images)
    path = Path(cache_dir) / f"ocr-{_key(reader.identity, [])}.json" if cache_dir else None
    known: dict[str, str] = {}
    if path is not None and path.is_file():
        try:
            loaded = json.loads(path.read_text())
            known = loaded if isinstance(loaded, dict) else {}
        except ValueError as exc:  # a corrupt cache file is rebuilt, never trusted
            log.warning("ignoring unreadable cache file %s (%s)", path, exc)
    texts = [known.get(stamp, "") for stamp in stamps]
    todo = [i for i, p in enumerate(images) if p is not None and stamps[i] not in known]
    for i in tqdm(todo, desc="read text in images", unit="image", disable=not progress, mininterval=5):
        texts[i] = reader.read_one(load_image(images[i]))
    if path is not None and todo:
        known.update({stamps[i]: texts[i] for i in todo})
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{uuid.uuid4().hex}.tmp")  # two writers never share a half-written file
        tmp.write_text(json.dumps(known))
        tmp.replace(path)  # a concurrent writer's new entries may be lost: they are read again, never wrong
    return texts
