"""Loaders for the public text sets whose files map onto rows one to one (hate, offensive language, sexism).

Each `load_<folder>(root)` reads one folder of /work/shared/data (see its SOURCE.md) and returns the record
contract of `moderation.data.records`: id, text, image, split, group plus that set's raw label fields as
strings. Which raw value means what for our categories is decided in the config's `label_map`, not here.
"""

from __future__ import annotations

import json
import re
import unicodedata
from pathlib import Path

import datasets
import pandas as pd

from moderation.data.records import DataError
from moderation.data.sources._common import (
    finish,
    map_values,
    need_file,
    read_table,
    row_ids,
    split_column,
)


def load_davidson_hate_offensive(root: Path) -> datasets.Dataset:
    path = need_file(root, "labeled_data.csv")
    frame = read_table(path, ["count", "hate_speech", "offensive_language", "neither", "class", "tweet"])
    # The unnamed first column is the row index of the original release; keep it as the id.
    ids = frame["Unnamed: 0"] if "Unnamed: 0" in frame else row_ids(frame)
    out = pd.DataFrame({
        "id": ids,
        "text": frame["tweet"],
        "class": map_values(frame["class"], {"0": "hate_speech", "1": "offensive_language", "2": "neither"},
                            path, "class"),
        # Vote counts: a rule may want "any annotator said hate" instead of the majority.
        "annotators": frame["count"],
        "votes_hate": frame["hate_speech"],
        "votes_offensive": frame["offensive_language"],
        "votes_neither": frame["neither"],
    })
    return finish(out, ["class", "annotators", "votes_hate", "votes_offensive", "votes_neither"], path)


def load_edos_sexism(root: Path) -> datasets.Dataset:
    path = need_file(root, "edos_labelled_aggregated.csv")
    labels = ["label_sexist", "label_category", "label_vector"]
    frame = read_table(path, ["rewire_id", "text", "split", *labels])
    out = frame[["rewire_id", "text", *labels]].rename(columns={"rewire_id": "id"})
    out["split"] = split_column(frame["split"], path)
    return finish(out, labels, path)


def _comment_key(text: object) -> str:
    # The two ETHOS files spell some comments differently (quotes, spacing), so join on letters and digits.
    text = unicodedata.normalize("NFKC", text if isinstance(text, str) else "").lower()
    return re.sub(r"[^a-z0-9]+", " ", text).strip()


ETHOS_MULTI = {"violence": "violence", "directed_vs_generalized": "directed", "gender": "gender", "race": "race",
               "national_origin": "national_origin", "disability": "disability", "religion": "religion",
               "sexual_orientation": "sexual_orientation"}


def load_ethos(root: Path) -> datasets.Dataset:
    """Binary file rows, with the multi-label fractions joined on by comment text (hateful comments only)."""
    binary_path = need_file(root, "Ethos_Dataset_Binary.csv")
    multi_path = need_file(root, "Ethos_Dataset_Multi_Label.csv")
    binary = read_table(binary_path, ["comment", "isHate"], sep=";")
    multi = read_table(multi_path, ["comment", *ETHOS_MULTI], sep=";")
    multi = multi.assign(key=multi["comment"].map(_comment_key)).drop_duplicates("key")
    multi = multi.rename(columns=ETHOS_MULTI).set_index("key")
    out = pd.DataFrame({"id": row_ids(binary), "text": binary["comment"], "is_hate": binary["isHate"]})
    keys = binary["comment"].map(_comment_key)
    for column in ETHOS_MULTI.values():
        # Comments missing from the multi-label file were not typed: None, not 0.
        out[column] = keys.map(multi[column])
    return finish(out, ["is_hate", *ETHOS_MULTI.values()], binary_path)


def load_exist2021_sexism_en(root: Path) -> datasets.Dataset:
    parts = []
    for split in ("train", "test"):
        path = need_file(root, f"exist2021_{split}_en.csv")
        frame = read_table(path, ["id", "source", "text", "task1", "task2"])
        parts.append(frame[["id", "text", "task1", "task2"]].assign(split=split, platform=frame["source"]))
    # EXIST ids are unique across its train and test files.
    return finish(pd.concat(parts, ignore_index=True), ["task1", "task2", "platform"], Path(root))


def load_gab_hate_corpus(root: Path) -> datasets.Dataset:
    parts = []
    for split in ("train", "test"):
        path = need_file(root, f"ghc_{split}.tsv")
        frame = read_table(path, ["text", "hd", "cv", "vo"], sep="\t")
        parts.append(frame[["text", "hd", "cv", "vo"]].assign(id=row_ids(frame, f"{split}-"), split=split))
    return finish(pd.concat(parts, ignore_index=True), ["hd", "cv", "vo"], Path(root))


HATEXPLAIN_CATEGORY = {"0": "normal", "1": "hatespeech", "2": "offensive", "3": "undecided"}


def load_hatexplain_mbib(root: Path) -> datasets.Dataset:
    """The MBIB copy, split by the official post-id lists; posts in no list (no majority label) are dropped."""
    path = need_file(root, "092-HateXplain.csv")
    frame = read_table(path, ["text", "category"])
    if "Unnamed: 0" not in frame:
        raise DataError(f"{path}: missing the unnamed first column (the HateXplain post_id)")
    divisions_path = need_file(root, "post_id_divisions.json")
    divisions = json.loads(divisions_path.read_text())
    split_of = {}
    for name in ("train", "val", "test"):
        if name not in divisions:
            raise DataError(f"{divisions_path}: missing key {name!r}")
        split_of.update(dict.fromkeys(divisions[name], "validation" if name == "val" else name))
    out = pd.DataFrame({
        "id": frame["Unnamed: 0"],
        "text": frame["text"],
        "split": frame["Unnamed: 0"].map(split_of),
        "category": map_values(frame["category"], HATEXPLAIN_CATEGORY, path, "category"),
    })
    return finish(out[out["split"].notna()], ["category"], path)


def _post_key(text: object) -> str:
    # Stage-2 posts sometimes differ from their stage-1 copy by spacing, case or a leading "rt".
    words = re.sub(r"[^a-z0-9]+", " ", text.lower() if isinstance(text, str) else "").split()
    return " ".join(w for w in words if w != "rt")


def load_implicit_hate_latent_hatred(root: Path) -> datasets.Dataset:
    """Stage-1 posts, with the stage-2 implicit-hate types joined onto the stage-1 implicit-hate rows.

    Stage-2 rows are a subset of stage 1, so they are never added as rows of their own; the few that match
    no stage-1 implicit-hate post (their stage-1 copy carries another class) are left out.
    """
    stage1_path = need_file(root, "implicit_hate_v1_stg1_posts.tsv")
    stage2_path = need_file(root, "implicit_hate_v1_stg2_posts.tsv")
    stage1 = read_table(stage1_path, ["post", "class"], sep="\t")
    stage2 = read_table(stage2_path, ["post", "implicit_class", "extra_implicit_class"], sep="\t")
    stage2 = stage2.assign(key=stage2["post"].map(_post_key)).drop_duplicates("key").set_index("key")
    keys = stage1["post"].map(_post_key).where(stage1["class"] == "implicit_hate")
    out = pd.DataFrame({"id": row_ids(stage1), "text": stage1["post"], "class": stage1["class"]})
    for column in ("implicit_class", "extra_implicit_class"):
        out[column] = keys.map(stage2[column])
    return finish(out, ["class", "implicit_class", "extra_implicit_class"], stage1_path)


JIGSAW_LABELS = ["toxic", "severe_toxic", "obscene", "threat", "insult", "identity_hate"]


def load_jigsaw_toxic_sample_detoxify(root: Path) -> datasets.Dataset:
    parts = []
    for split in ("train", "test"):
        path = need_file(root, f"{split}.csv")
        frame = read_table(path, ["id", "comment_text", *JIGSAW_LABELS])
        # In the Kaggle test labels -1 means "not scored": a missing label, not a class.
        labels = frame[JIGSAW_LABELS].where(frame[JIGSAW_LABELS] != "-1", None)
        parts.append(pd.concat([frame[["id"]], frame[["comment_text"]].set_axis(["text"], axis=1), labels],
                               axis=1).assign(split=split))
    return finish(pd.concat(parts, ignore_index=True), JIGSAW_LABELS, Path(root))


def load_olid(root: Path) -> datasets.Dataset:
    """Train file plus the test tweets joined with the three test label files.

    "NULL" (the train file's value for a level that does not apply, e.g. subtask_c of an untargeted tweet)
    is kept as a value, and test tweets absent from a deeper level's label file get it too.
    """
    tsv = {"sep": "\t", "quoting": 3}  # tweets contain unbalanced quote characters
    train_path = need_file(root, "olid-training-v1.0.tsv")
    tasks = ["subtask_a", "subtask_b", "subtask_c"]
    train = read_table(train_path, ["id", "tweet", *tasks], **tsv).assign(split="train")
    test_path = need_file(root, "testset-levela.tsv")
    test = read_table(test_path, ["id", "tweet"], **tsv)[["id", "tweet"]].assign(split="test")
    for level, task in zip("abc", tasks):
        labels_path = need_file(root, f"labels-level{level}.csv")
        labels = read_table(labels_path, ["id", "label"]).set_index("id")["label"]
        test[task] = test["id"].map(labels).fillna("NULL")
    out = pd.concat([train, test], ignore_index=True).rename(columns={"tweet": "text"})
    return finish(out, tasks, Path(root))


def load_toxigen_seed_statements(root: Path) -> datasets.Dataset:
    path = need_file(root, "toxigen_seed_statements.csv")
    frame = read_table(path, ["text", "target_group", "label"])
    out = frame[["text", "target_group", "label"]].assign(id=row_ids(frame))
    return finish(out, ["label", "target_group"], path)


def load_simplesafetytests(root: Path) -> datasets.Dataset:
    path = need_file(root, "simplesafetytests_test_cases.csv")
    frame = read_table(path, ["id", "harm_area", "category", "prompts_final"])
    out = frame[["id", "harm_area", "category"]].assign(text=frame["prompts_final"])
    return finish(out, ["harm_area", "category"], path)
