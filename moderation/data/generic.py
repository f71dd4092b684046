"""The generic bring-your-own-data format: JSONL rows `{"id", "text", "image", "labels": {category: 0|1}}`.

`text` or `image` may be absent or null (not both); `image` is a path relative to the JSONL file; a category
absent from `labels` is unknown (masked), never a negative. Optional `split` ("train" / "validation" /
"test") and `group` fields pin a row's split. Optional `source` (where the row came from) and `target` (the
group a post is about or aimed at: a string or a list of strings) are kept for audits to slice by; they
never change labels or splits. Review-queue exports are written in this format, so reviewed posts train the
next model; their optional `note` (what the reviewer wrote) is for people and is never read. Every problem is reported with the file and line number.
"""

from __future__ import annotations

import json
from pathlib import Path

from moderation.data.records import SPLITS, DataError

_KNOWN_KEYS = {"id", "text", "image", "labels", "split", "group", "source", "target", "note"}


def label_field(category: str) -> str:
    """The raw field a generic row's label for `category` is stored under (see moderation.data.labelmap)."""
    return f"label__{category}"


def read_jsonl_rows(path: Path, categories: list[str] | None) -> list[dict]:
    """Parse and validate a generic JSONL file into raw rows (records.RAW_COLUMNS + one field per category).

    Each row also carries `source` (str, "" when absent) and `target` (list of str, [] when absent).

    With `categories=None` labels are not read (prediction needs only id, text and image).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    rows, seen = [], set()
    with path.open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path}:{line_no}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{where}: not valid JSON ({exc.msg})") from None
            row = _parse_row(obj, where, path.parent, categories)
            if row["id"] in seen:
                raise DataError(f"{where}: duplicate id {row['id']!r}")
            seen.add(row["id"])
            rows.append(row)
    if not rows:
        raise DataError(f"{path}: no rows")
    return rows


def _parse_row(obj: object, where: str, base: Path, categories: list[str] | None) -> dict:
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    unknown = set(obj) - _KNOWN_KEYS
    if unknown:
        raise DataError(f"{where}: unknown key(s) {sorted(unknown)} (allowed: {sorted(_KNOWN_KEYS)})")
    if "id" not in obj or obj["id"] in (None, ""):
        raise DataError(f"{where}: missing key 'id'")
    text, image = obj.get("text"), obj.get("image")
    if text is not None and not isinstance(text, str):
        raise DataError(f"{where}: 'text' must be a string or null, got {type(text).__name__}")
    if image is not None and not isinstance(image, str):
        raise DataError(f"{where}: 'image' must be a path string or null, got {type(image).__name__}")
    if not (text and text.strip()) and not image:
        raise DataError(f"{where}: row {obj['id']!r} has neither text nor image")
    split = obj.get("split") or ""
    if split and split not in SPLITS:
        raise DataError(f"{where}: 'split' is {split!r}, expected one of {list(SPLITS)}")
    row = {
        "id": str(obj["id"]),
        "text": text.strip() if text else None,
        "image": str((base / image).resolve()) if image else None,
        "split": split,
        "group": str(obj.get("group") or ""),
        "source": _parse_source(obj.get("source"), where),
        "target": _parse_target(obj.get("target"), where),
    }
    if categories is not None:
        row.update(_parse_labels(obj.get("labels", {}), where, categories))
    return row


def _parse_source(source: object, where: str) -> str:
    if source is not None and not isinstance(source, str):
        raise DataError(f"{where}: 'source' must be a string or null, got {type(source).__name__}")
    return (source or "").strip()


def target_names(target: object) -> list[str]:
    """Target group(s) (a string, a list of strings or None) as non-empty, stripped, lower-cased names, so
    one group is spelled the same across datasets; raises ValueError naming any other value."""
    values = [target] if isinstance(target, str) else target
    if values is None:
        return []
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise ValueError(f"a target must be a string, a list of strings or null, got {target!r}")
    return [v.strip().lower() for v in values if v.strip()]


def _parse_target(target: object, where: str) -> list[str]:
    try:
        return target_names(target)
    except ValueError as exc:
        raise DataError(f"{where}: 'target': {exc}") from None


def _parse_labels(labels: object, where: str, categories: list[str]) -> dict:
    if not isinstance(labels, dict):
        raise DataError(f"{where}: 'labels' must be an object {{category: 0|1}}, got {type(labels).__name__}")
    for category, value in labels.items():
        if category not in categories:
            raise DataError(f"{where}: labels.{category}: unknown category (known: {categories})")
        if isinstance(value, bool) or value not in (0, 1):
            raise DataError(f"{where}: labels.{category}: value {value!r} is not 0 or 1")
    return {label_field(c): (str(int(labels[c])) if labels.get(c) is not None else None) for c in categories}


def write_jsonl(rows: list[dict], path: Path) -> Path:
    """Write rows (dicts) as JSONL atomically: a crash never leaves a half-written file under `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    tmp.replace(path)
    return path


TABLE_SUFFIXES = (".jsonl", ".csv", ".parquet")  # what `predict` and `score` read and write by extension
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp"}


def read_prediction_inputs(path: Path) -> list[dict]:
    """Rows to score ({"id", "text", "image"}), by the file's extension: generic JSONL; a CSV or Parquet table
    with a `text` and/or an `image` column (an optional `id` column; other columns are ignored; the header is
    never a row; image paths are relative to the file); anything else is a plain list, one text or one image
    path per line."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return read_jsonl_rows(path, categories=None)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    if suffix in (".csv", ".parquet"):
        return _table_rows(path)
    rows = []
    for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        is_image = Path(line).suffix.lower() in IMAGE_SUFFIXES
        image = str((path.parent / line).resolve()) if is_image else None
        if is_image and not Path(image).is_file():
            raise DataError(f"{path}:{line_no}: image {line!r} does not exist")
        rows.append({"id": str(line_no), "text": None if is_image else line, "image": image})
    if not rows:
        raise DataError(f"{path}: no rows")
    return rows


def _table_rows(path: Path) -> list[dict]:
    """CSV (the header names the columns; line numbers in errors count it) or Parquet rows to score."""
    if path.suffix.lower() == ".csv":
        import csv

        with path.open(encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle)
            columns, records = reader.fieldnames or [], list(reader)
        where, first = "line", 2  # line 1 is the header
    else:
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except Exception as exc:  # pyarrow raises several types for a file that is not Parquet
            raise DataError(f"{path}: cannot be read as Parquet ({exc})") from None
        columns, records = table.column_names, table.to_pylist()
        where, first = "row", 1
    if not {"text", "image"} & set(columns):
        raise DataError(f"{path}: needs a 'text' and/or an 'image' column (has {columns})")
    rows, seen = [], set()
    for n, record in enumerate(records, start=first):
        text, image = (_cell(record.get(c)) for c in ("text", "image"))
        post_id = _cell(record.get("id")) or str(n)
        if not (text and text.strip()) and not image:
            raise DataError(f"{path}: {where} {n} (id {post_id!r}) has neither text nor image")
        if post_id in seen:
            raise DataError(f"{path}: {where} {n}: duplicate id {post_id!r}")
        seen.add(post_id)
        rows.append({"id": post_id, "text": text, "image": str((path.parent / image).resolve()) if image else None})
    if not rows:
        raise DataError(f"{path}: no rows")
    return rows


def _cell(value) -> str | None:
    """A table cell as a string; empty and null cells are absent."""
    if value is None:
        return None
    value = str(value)
    return value if value.strip() else None


def check_output_path(path: Path) -> Path:
    """`path` if its extension names an output format (.jsonl, .csv, .parquet); DataError otherwise."""
    path = Path(path)
    if path.suffix.lower() not in TABLE_SUFFIXES:
        raise DataError(f"{path}: output must end in one of {list(TABLE_SUFFIXES)} (the format follows the extension)")
    return path


def write_predictions_file(results: list[dict], path: Path) -> Path:
    """Write `Moderator.score` results by the extension of `path`: JSONL as they are; CSV and Parquet flat, one
    column per category and kind (`score__hate`, `text_score__hate`, `image_score__hate`, `modality__hate`) plus
    `id`, `ocr_text` and `error` (set for a row that could not be scored). Written atomically."""
    path = check_output_path(path)
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return write_jsonl(results, path)
    rows = flat_predictions(results)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    if suffix == ".csv":
        import csv

        with tmp.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]) if rows else ["id"])
            writer.writeheader()
            writer.writerows(rows)
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), tmp)
    tmp.replace(path)
    return path


def flat_predictions(results: list[dict]) -> list[dict]:
    """Prediction dicts as flat rows with the same columns each (see `write_predictions_file`)."""
    categories = list(next((r["scores"] for r in results if r.get("scores")), {}))
    flat = []
    for r in results:
        row = {"id": r.get("id"), "error": r.get("error"), "ocr_text": r.get("ocr_text")}
        for kind, key in (("score", "scores"), ("text_score", "text_scores"), ("image_score", "image_scores"),
                          ("modality", "modality")):
            values = r.get(key) or {}
            row.update({f"{kind}__{c}": values.get(c) for c in categories})
        flat.append(row)
    return flat
