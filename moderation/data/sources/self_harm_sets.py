"""Loaders for the public self-harm / suicide sets (Reddit posts and tweets, mostly subreddit-derived labels).

These texts are sensitive first-person accounts: loaders keep only the text and the label, never user names.
"""

from __future__ import annotations

import ast
import logging
from pathlib import Path

import datasets
import pandas as pd

from moderation.data.sources._common import finish, need_file, read_table, row_ids

log = logging.getLogger(__name__)


def _parse_posts(cell: str) -> list[str]:
    """A user's posts from the Python-list string; a cell cut at Excel's limit loses its last, partial post."""
    try:
        return [str(p) for p in ast.literal_eval(cell)]
    except (ValueError, SyntaxError):
        pass
    # Cut back to the end of the last complete item ("...', '" or '...", "') and close the list there.
    end = len(cell)
    while end > 0:
        end = max(cell.rfind("', ", 0, end), cell.rfind('", ', 0, end))
        if end <= 0:
            break
        try:
            return [str(p) for p in ast.literal_eval(cell[: end + 1] + "]")]
        except (ValueError, SyntaxError):
            continue
    # Nothing parses: keep the raw text without the list brackets rather than drop a labelled user.
    return [cell.strip("[]'\" ")]


def load_reddit_cssrs_suicide_500(root: Path) -> datasets.Dataset:
    """One row per user: the user's posts joined by blank lines, with the user-level C-SSRS label."""
    path = need_file(root, "500_Reddit_users_posts_labels.csv")
    frame = read_table(path, ["User", "Post", "Label"])
    posts = frame["Post"].map(_parse_posts, na_action="ignore")
    truncated = frame["Post"].map(lambda cell: not cell.rstrip().endswith("]"), na_action="ignore").fillna(False)
    log.info("%s: %d truncated user rows read up to their last complete post", path, int(truncated.sum()))
    out = pd.DataFrame({"id": frame["User"], "text": posts.map(lambda ps: "\n\n".join(p.strip() for p in ps), na_action="ignore"),
                        "label": frame["Label"]})
    return finish(out, ["label"], path)


def load_reddit_suicidewatch_vs_teenagers_sample(root: Path) -> datasets.Dataset:
    path = need_file(root, "selfharm.csv")
    frame = read_table(path, ["orig_index", "text", "class"])
    out = frame[["text", "class"]].assign(id=frame["orig_index"])
    return finish(out, ["class"], path)


def load_sdcnl_reddit_suicide_depression(root: Path) -> datasets.Dataset:
    """Title and body as one text (the title often carries the message), official train/test files."""
    parts = []
    for file_split, split in (("training", "train"), ("testing", "test")):
        path = need_file(root, f"{file_split}-set.csv")
        frame = read_table(path, ["title", "selftext", "is_suicide"])
        text = frame["title"].fillna("") + "\n\n" + frame["selftext"].fillna("")
        parts.append(pd.DataFrame({"id": row_ids(frame, f"{split}-"), "text": text, "split": split,
                                   "is_suicide": frame["is_suicide"]}))
    return finish(pd.concat(parts, ignore_index=True), ["is_suicide"], Path(root))


def load_twitter_suicidal_intention(root: Path) -> datasets.Dataset:
    path = need_file(root, "twitter-suicidal_data.csv")
    frame = read_table(path, ["tweet", "intention"])
    out = pd.DataFrame({"id": row_ids(frame), "text": frame["tweet"], "intention": frame["intention"]})
    return finish(out, ["intention"], path)


def load_twitter_suicidal_tendency_handlabelled(root: Path) -> datasets.Dataset:
    path = need_file(root, "tweets_suicidal_labelled.csv")
    frame = read_table(path, ["part", "tweet", "label"])
    out = pd.DataFrame({"id": row_ids(frame), "text": frame["tweet"], "label": frame["label"]})
    return finish(out, ["label"], path)
