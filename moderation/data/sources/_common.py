"""Shared plumbing for the public-set loaders: reading files, checking columns, shaping the output rows.

Every file is read through the Hugging Face `datasets` CSV/JSON builders with every column typed as a string
(so ids like "000123" keep their zeros and label values compare as the raw strings the configs list), then
reshaped in pandas, and handed back as a `datasets.Dataset` whose columns are all strings or None.
"""

from __future__ import annotations

import html
import logging
import tempfile
from pathlib import Path

import datasets
import pandas as pd
from datasets.exceptions import DatasetGenerationError

from moderation.data.records import GROUP, ID, IMAGE, RAW_COLUMNS, SPLIT, TEXT, DataError

log = logging.getLogger(__name__)

# The builders write Arrow files before loading them; keep those out of the user's HF cache.
_CACHE_DIR = Path(tempfile.gettempdir()) / "moderation-source-cache"

# Official split names in the files -> ours.
SPLIT_NAMES = {"train": "train", "dev": "validation", "val": "validation", "valid": "validation",
               "validation": "validation", "test": "test"}


def need_file(root: Path, name: str) -> Path:
    """`root/name`, or a DataError naming the folder and the missing file."""
    path = Path(root) / name
    if not path.is_file():
        raise DataError(f"{root}: missing file {name!r} (is this the right dataset folder?)")
    return path


def require_columns(columns: list[str], required: list[str], path: Path) -> None:
    missing = [c for c in required if c not in columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing} (found: {list(columns)})")


def read_table(path: Path, required: list[str], sep: str = ",", **csv_kwargs) -> pd.DataFrame:
    """A CSV/TSV file as a DataFrame of strings (NaN where a cell is empty), after checking its columns.

    Only empty cells are missing: the pandas defaults would also turn texts such as "NULL" or "NA" into NaN.
    """
    try:
        header = pd.read_csv(path, sep=sep, nrows=0, **csv_kwargs).columns.tolist()
        require_columns(header, required, path)
        features = datasets.Features({c: datasets.Value("string") for c in header})
        table = datasets.load_dataset(
            "csv", data_files=str(path), split="train", features=features, sep=sep, keep_default_na=False,
            na_values=[""], keep_in_memory=True, cache_dir=str(_CACHE_DIR), **csv_kwargs)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, DatasetGenerationError) as exc:
        raise DataError(f"{path}: cannot be read as a {sep!r}-separated table ({exc})") from None
    return _as_frame(table)


def read_json_lines(path: Path, required: list[str]) -> pd.DataFrame:
    """A JSONL file as a DataFrame of strings, after checking that every record has the required keys."""
    table = datasets.load_dataset("json", data_files=str(path), split="train", keep_in_memory=True,
                                  cache_dir=str(_CACHE_DIR))
    require_columns(table.column_names, required, path)
    frame = _as_frame(table)
    for column in required:
        if frame[column].isna().any():
            raise DataError(f"{path}: key {column!r} is missing in line {int(frame[column].isna().idxmax()) + 1}")
    return frame


def _as_frame(table: datasets.Dataset) -> pd.DataFrame:
    # Missing cells come back as NaN (pandas' string dtype), not None: test cells with isinstance(v, str).
    frame = table.to_pandas()
    return frame.apply(lambda column: column.map(str, na_action="ignore"))


def row_ids(frame: pd.DataFrame, prefix: str = "") -> pd.Series:
    """Ids from the row position in the source file: stable as long as the file is, for files without ids."""
    return pd.Series([f"{prefix}{i}" for i in range(len(frame))], index=frame.index)


def clean_text(value: object) -> str | None:
    """Stripped text with HTML entities decoded (several sets keep `&amp;`); None when nothing is left."""
    if not isinstance(value, str):
        return None
    text = html.unescape(value).strip()
    return text or None


def fraction(value: float) -> str:
    """An annotator fraction as a short, exact-enough string ("0.6667")."""
    return f"{value:.4g}"


def finish(frame: pd.DataFrame, label_columns: list[str], where: Path) -> datasets.Dataset:
    """Rows -> the record contract: RAW_COLUMNS then the raw label fields, all strings or None.

    Cleans texts, drops rows with neither text nor image, and checks that ids are unique.
    """
    frame = frame.copy()
    for column, default in ((IMAGE, None), (SPLIT, ""), (GROUP, "")):
        if column not in frame:
            frame[column] = default
    frame[TEXT] = frame[TEXT].map(clean_text)
    keep = frame[TEXT].notna() | frame[IMAGE].notna()
    if (~keep).any():
        log.info("%s: dropped %d rows with neither text nor image", where, int((~keep).sum()))
    frame = frame[keep]
    ids = frame[ID].map(str)
    duplicated = ids[ids.duplicated()]
    if len(duplicated):
        raise DataError(f"{where}: duplicate id(s) {duplicated.head(5).tolist()}")
    columns = list(RAW_COLUMNS) + label_columns
    # Built from plain lists: pandas' string dtype would turn None back into NaN.
    rows = {c: [v if isinstance(v, str) else None for v in frame[c]] for c in columns}
    rows[ID] = ids.tolist()
    features = datasets.Features({c: datasets.Value("string") for c in columns})
    return datasets.Dataset.from_dict(rows, features=features)


def split_column(values: pd.Series, path: Path) -> pd.Series:
    """An official split column mapped to train/validation/test; an unknown name is an error."""
    unknown = sorted(set(values.dropna()) - set(SPLIT_NAMES))
    if unknown or values.isna().any():
        raise DataError(f"{path}: column 'split' has unknown value(s) {unknown or [None]} (known: {sorted(SPLIT_NAMES)})")
    return values.map(SPLIT_NAMES)


def map_values(values: pd.Series, mapping: dict[str, str], path: Path, column: str) -> pd.Series:
    """Recode a label column (e.g. 0/1/2 -> names); a value outside `mapping` is an error, never dropped."""
    unknown = sorted(set(values.dropna()) - set(mapping))
    if unknown:
        raise DataError(f"{path}: column {column!r} has unexpected value(s) {unknown} (expected {sorted(mapping)})")
    return values.map(mapping, na_action="ignore")
