"""Writing reviewed items as training data in the generic JSONL format.

One row per decision: `{"id": post_id, "text": str|null, "image": "images/<name>.<ext>"|null,
"labels": {category: 0|1}}` and, when the reviewer wrote one, `"note"`: the keys moderation.data.generic
reads (a note is kept for people and never used in training). Labels are the reviewer's, and
only the categories they decided: anything else stays unknown (masked in training), never a negative.
Images are written beside the JSONL under `images/`, and rows refer to them relative to the JSONL file, so
the folder can be moved or copied as a whole.
"""

from __future__ import annotations

import hashlib
import json
import mimetypes
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

IMAGES_DIR = "images"
_EXTENSIONS = {"image/jpeg": "jpg", "image/png": "png", "image/gif": "gif", "image/webp": "webp", "image/bmp": "bmp"}
_SAFE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}")


def image_name(post_id: str, mime: str | None) -> str:
    """`<id>.<ext>` for the image of `post_id`, safe as a file name on any platform.

    A post id that is not a plain file name (slashes, spaces, very long) is cleaned and suffixed with a
    short hash of the original, so two different ids can never share a file.
    """
    if _SAFE_NAME.fullmatch(post_id):
        stem = post_id
    else:
        digest = hashlib.sha256(post_id.encode("utf-8")).hexdigest()[:12]
        stem = re.sub(r"[^A-Za-z0-9_-]+", "_", post_id)[:80].strip("_") + "-" + digest
    ext = _EXTENSIONS.get(mime or "") or (mimetypes.guess_extension(mime or "") or ".bin").lstrip(".")
    return f"{stem}.{ext}"


def write_generic_jsonl(records: Iterable[Mapping[str, Any]], out_path: Path) -> int:
    """Write `records` (post_id, text, image, image_mime, labels) to `out_path`; return the rows written.

    The JSONL is written to a temporary file and renamed into place, so a reader never sees half an export.
    """
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    images_dir = out_path.parent / IMAGES_DIR
    tmp_path = out_path.with_name(out_path.name + ".tmp")
    written = 0
    with tmp_path.open("w", encoding="utf-8") as handle:
        for record in records:
            image_path = None
            if record["image"] is not None:
                name = image_name(record["post_id"], record["image_mime"])
                images_dir.mkdir(exist_ok=True)
                (images_dir / name).write_bytes(record["image"])
                image_path = f"{IMAGES_DIR}/{name}"  # always '/', whatever the OS: rows must be portable
            row = {"id": record["post_id"], "text": record["text"], "image": image_path, "labels": record["labels"]}
            if record.get("note"):
                row["note"] = record["note"]
            handle.write(json.dumps(row, ensure_ascii=False, sort_keys=False) + "\n")
            written += 1
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp_path, out_path)
    return written
