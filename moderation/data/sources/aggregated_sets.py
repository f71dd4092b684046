"""Loaders for public text sets whose labels must be aggregated first: per-annotator votes or one row per label.

- convabuse: eight annotator blocks per row -> majority votes ("1"/"0", None where nobody labelled).
- toxic_spans_civil: comments + rater annotations + typed spans -> per-type fraction of raters.
- online_misogyny_reddit: one CSV row per (post, label) -> one row per post with per-category flags.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import datasets
import numpy as np
import pandas as pd

from moderation.data.records import DataError
from moderation.data.sources._common import finish, fraction, need_file, read_table, split_column

# One annotator block of a ConvAbuse row, in file order. `is_abuse.N` is a one-hot severity (1 = not
# abusive ... -3 = very strongly abusive); the rest are 0/1 ticks.
CONVABUSE_BLOCK = ["is_abuse.1", "is_abuse.0", "is_abuse.-1", "is_abuse.-2", "is_abuse.-3", "ableist", "homophobic",
                   "intellectual", "racist", "sexist", "sex_harassment", "transphobic", "target.generalised",
                   "target.individual", "target.system", "explicit", "implicit"]
CONVABUSE_ABUSIVE = ["is_abuse.-1", "is_abuse.-2", "is_abuse.-3"]
CONVABUSE_TICKS = CONVABUSE_BLOCK[5:]
CONVABUSE_FIELDS = ["is_abuse"] + [t.replace(".", "_") for t in CONVABUSE_TICKS]


def _annotator_blocks(columns: list[str], path: Path) -> list[list[str]]:
    """The annotator columns cut into blocks of CONVABUSE_BLOCK, checked by name.

    Checked by position, not by name alone: the files call annotators 7 and 8's transphobic columns
    "Annotator6_transphobic" again (pandas reads them as "Annotator6_transphobic.1" / ".2").
    """
    annotator = [c for c in columns if c.startswith("Annotator")]
    if not annotator or len(annotator) % len(CONVABUSE_BLOCK):
        raise DataError(f"{path}: expected annotator columns in blocks of {len(CONVABUSE_BLOCK)} "
                        f"({CONVABUSE_BLOCK}), found {len(annotator)}")
    blocks = [annotator[i:i + len(CONVABUSE_BLOCK)] for i in range(0, len(annotator), len(CONVABUSE_BLOCK))]
    for block in blocks:
        for column, field in zip(block, CONVABUSE_BLOCK):
            name = column.split("_", 1)[1] if "_" in column else ""
            if name != field and re.sub(r"\.\d+$", "", name) != field:
                raise DataError(f"{path}: column {column!r} where an annotator's {field!r} column was expected")
    return blocks


def _first_vote(cell: object) -> float:
    # A few cells hold repeat annotations such as "1, 1"; SOURCE.md counts the first value.
    return float(cell.split(",")[0]) if isinstance(cell, str) else np.nan


def _majority(votes: np.ndarray, labelled: np.ndarray) -> list[str | None]:
    """"1" when more than half of the annotators who labelled the row voted yes; None when nobody did."""
    return [None if n == 0 else ("1" if v > n / 2 else "0") for v, n in zip(votes, labelled)]


def _convabuse_majorities(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    blocks = _annotator_blocks(frame.columns.tolist(), path)
    n = len(frame)
    abusive, labelled = np.zeros(n), np.zeros(n)
    tick_votes = {t: np.zeros(n) for t in CONVABUSE_TICKS}
    tick_labelled = {t: np.zeros(n) for t in CONVABUSE_TICKS}
    for block in blocks:
        values = frame[block].map(_first_vote).set_axis(CONVABUSE_BLOCK, axis=1)
        severity = values[CONVABUSE_BLOCK[:5]]
        labelled += severity.notna().any(axis=1).to_numpy()
        abusive += (values[CONVABUSE_ABUSIVE] == 1).any(axis=1).to_numpy()
        for tick in CONVABUSE_TICKS:
            tick_votes[tick] += (values[tick] == 1).to_numpy()
            tick_labelled[tick] += values[tick].notna().to_numpy()
    out = {"is_abuse": _majority(abusive, labelled)}
    for tick, field in zip(CONVABUSE_TICKS, CONVABUSE_FIELDS[1:]):
        out[field] = _majority(tick_votes[tick], tick_labelled[tick])
    return pd.DataFrame(out, index=frame.index)


def load_convabuse(root: Path) -> datasets.Dataset:
    """The user's utterance (the agent's turns are context, not the moderated text) with majority votes."""
    parts = []
    for file_split, split in (("train", "train"), ("valid", "validation"), ("test", "test")):
        path = need_file(root, f"ConvAbuseEMNLP{file_split}.csv")
        frame = read_table(path, ["example_id", "user"])
        majorities = _convabuse_majorities(frame, path)
        parts.append(pd.concat([frame[["example_id", "user"]].set_axis(["id", "text"], axis=1), majorities],
                               axis=1).assign(split=split))
    return finish(pd.concat(parts, ignore_index=True), CONVABUSE_FIELDS, Path(root))


# Span type -> field. The file has three truncated type strings ("Insu", "Identity based "); spans without
# a type (14) are not counted for any type.
TOXIC_SPAN_TYPES = {"Insult": "insult", "Insu": "insult", "Threat": "threat", "Identity based Attack": "identity_attack",
                    "Identity based ": "identity_attack", "Profane/Obscene": "profane", "Other Toxicity": "other_toxicity"}
TOXIC_SPAN_FIELDS = ["toxic", "not_toxic", "insult", "threat", "identity_attack", "profane", "other_toxicity"]


def load_toxic_spans_civil(root: Path) -> datasets.Dataset:
    """One row per comment; each field is the fraction of its raters who marked (or ticked) that label."""
    comments_path = need_file(root, "comments.csv")
    annotations_path = need_file(root, "annotations.csv")
    spans_path = need_file(root, "spans.csv")
    comments = read_table(comments_path, ["comment_id", "comment_text"])
    annotations = read_table(annotations_path, ["annotation", "comment_id", "not toxic"])
    spans = read_table(spans_path, ["annotation", "type"])
    unknown = sorted(set(spans["type"].dropna()) - set(TOXIC_SPAN_TYPES))
    if unknown:
        raise DataError(f"{spans_path}: column 'type' has unexpected value(s) {unknown}")
    raters = annotations.groupby("comment_id").size()
    marked = spans.assign(field=spans["type"].map(TOXIC_SPAN_TYPES)).dropna(subset=["field"])
    marked = marked.merge(annotations[["annotation", "comment_id"]], on="annotation")
    # A rater counts once per type, however many spans of it they marked.
    per_type = marked.drop_duplicates(["annotation", "field"]).groupby(["comment_id", "field"]).size().unstack()
    not_toxic = (annotations["not toxic"] == "True").groupby(annotations["comment_id"]).sum() / raters
    ids = comments["comment_id"]
    out = pd.DataFrame({"id": ids, "text": comments["comment_text"]})
    if (~ids.isin(raters.index)).any():
        raise DataError(f"{annotations_path}: no annotations for comment(s) {ids[~ids.isin(raters.index)].head().tolist()}")
    out["not_toxic"] = ids.map(not_toxic)
    out["toxic"] = 1 - out["not_toxic"]
    for field in TOXIC_SPAN_FIELDS[2:]:
        counts = per_type[field] if field in per_type else pd.Series(dtype=float)
        out[field] = ids.map(counts).fillna(0) / ids.map(raters)
    for field in TOXIC_SPAN_FIELDS:
        out[field] = out[field].map(fraction)
    return finish(out, TOXIC_SPAN_FIELDS, comments_path)


# level_2 value -> flag field ("1" when any of the post's rows carries it).
MISOGYNY_FLAGS = {"Derogation": "derogation", "Misogynistic_pejorative": "pejorative", "Treatment": "treatment",
                  "Misogynistic_personal_attack": "personal_attack",
                  "Nonmisogynistic_personal_attack": "nonmisogynistic_personal_attack",
                  "Counter_speech": "counter_speech"}
MISOGYNY_LEVEL_2 = set(MISOGYNY_FLAGS) | {"None_of_the_categories"}
MISOGYNY_THREATS = {"Threatening_Physical_violence", "Threatening_Sexual_violence"}
MISOGYNY_FIELDS = ["level_1", *MISOGYNY_FLAGS.values(), "threat"]
_DELETED_BODIES = {"[deleted]", "[removed]"}


def _first_sheet_item(sheet_order: object) -> str | None:
    if not isinstance(sheet_order, str):
        return None
    try:
        return str(ast.literal_eval(sheet_order)[0])
    except (ValueError, SyntaxError, TypeError, IndexError):
        return None


def _misogyny_image(row: pd.Series, images: Path) -> str | None:
    """The post's image by the file-name heuristic of SOURCE.md, only for rows marked as having one."""
    if row["image"] != "Yes" or not isinstance(row["first_sheet_item"], str):
        return None
    path = images / f"{row['week']}_{row['group']}_{row['first_sheet_item']}.jpg"
    return str(path.resolve()) if path.is_file() else None


def load_online_misogyny_reddit(root: Path) -> datasets.Dataset:
    """One row per Reddit entry: the CSV repeats an entry once per label it got (level_2 is single-valued)."""
    path = need_file(root, "final_labels.csv")
    frame = read_table(path, ["entry_id", "body", "image", "week", "group", "sheet_order", "level_1", "level_2",
                              "level_3", "split"])
    unknown = sorted(set(frame["level_2"].dropna()) - MISOGYNY_LEVEL_2)
    if unknown:
        raise DataError(f"{path}: column 'level_2' has unexpected value(s) {unknown}")
    frame["split"] = split_column(frame["split"], path)
    frame["first_sheet_item"] = frame["sheet_order"].map(_first_sheet_item)
    frame["image_path"] = frame.apply(_misogyny_image, axis=1, images=Path(root) / "post_images")
    # "[deleted]"/"[removed]" are Reddit placeholders, not the author's text.
    frame["body"] = frame["body"].where(~frame["body"].isin(_DELETED_BODIES), None)
    for level_2, flag in MISOGYNY_FLAGS.items():
        frame[flag] = frame["level_2"] == level_2
    frame["threat"] = frame["level_3"].isin(MISOGYNY_THREATS)
    frame["misogynistic"] = frame["level_1"] == "Misogynistic"
    entries = frame.groupby("entry_id", sort=False)
    out = entries.agg(text=("body", "first"), image=("image_path", "first"), split=("split", "first"),
                      misogynistic=("misogynistic", "any"),
                      **{flag: (flag, "any") for flag in [*MISOGYNY_FLAGS.values(), "threat"]}).reset_index()
    out = out.rename(columns={"entry_id": "id"})
    out["level_1"] = np.where(out["misogynistic"], "Misogynistic", "Nonmisogynistic")
    for flag in [*MISOGYNY_FLAGS.values(), "threat"]:
        out[flag] = np.where(out[flag], "1", "0")
    return finish(out, MISOGYNY_FIELDS, path)
