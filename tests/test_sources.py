"""Tests for moderation.data.sources: every public-set loader against the counts in its SOURCE.md, the error
messages on broken files (synthetic placeholder files only), and configs/all_datasets.yaml's label maps
against the raw values that really occur.

Loaders read ../shared/data; tests that need a folder skip with the reason when it is absent. Each set is
loaded once per session.
"""

from __future__ import annotations

import functools
from collections import Counter
from pathlib import Path

import pytest

from moderation.config import load_config
from moderation.data.records import RAW_COLUMNS, DataError
from moderation.data.sources import LICENSES, LOADERS, PERMISSIVE_LICENSES, is_permissive
from tests.conftest import REPO, SHARED_DATA, require_shared_data

CONFIG = REPO / "configs" / "all_datasets.yaml"


@functools.cache
def _config():
    return load_config(CONFIG)

# name -> (rows, rows per split) after the documented filtering:
# - hatexplain: the 919 "undecided" posts are in no official split and are dropped;
# - online_misogyny: one row per entry (the CSV repeats an entry per label: 6,567 rows, 6,383 entries),
#   then 144 entries whose body is "[deleted]"/"[removed]"/empty and have no image are dropped;
# - twitter_suicidal_intention: 10 rows with an empty tweet are dropped;
# - meme sets: only rows whose image exists.
EXPECTED = {
    "cm_off_meme_sample": (1047, {"": 1047}),
    "convabuse": (4185, {"train": 2501, "validation": 831, "test": 853}),
    "davidson_hate_offensive": (24783, {"": 24783}),
    "edos_sexism": (19999, {"train": 13999, "validation": 2000, "test": 4000}),
    "ethos": (998, {"": 998}),
    "exist2021_sexism_en": (5642, {"train": 3434, "test": 2208}),
    "gab_hate_corpus": (27545, {"train": 22036, "test": 5509}),
    "hatexplain_mbib": (19229, {"train": 15383, "validation": 1922, "test": 1924}),
    "implicit_hate_latent_hatred": (21464, {"": 21464}),
    "jigsaw_toxic_sample_detoxify": (333, {"train": 282, "test": 51}),
    "olid": (14100, {"train": 13240, "test": 860}),
    "online_misogyny_reddit": (6239, {"train": 4983, "test": 1256}),
    "reddit_cssrs_suicide_500": (500, {"": 500}),
    "reddit_suicidewatch_vs_teenagers_sample": (3391, {"": 3391}),
    "religious_hateful_memes": (1508, {"": 1508}),
    "sdcnl_reddit_suicide_depression": (1895, {"train": 1516, "test": 379}),
    "simplesafetytests": (100, {"": 100}),
    "toxic_spans_civil": (16100, {"": 16100}),
    "toxigen_seed_statements": (722, {"": 722}),
    "twitter_suicidal_intention": (9109, {"": 9109}),
    "twitter_suicidal_tendency_handlabelled": (11439, {"": 11439}),
}

# Label counts from SOURCE.md: (field, value, count[, split]). ">=x" counts fractions of at least x.
LABEL_COUNTS = {
    "cm_off_meme_sample": [("level1", "off", 507)],
    "convabuse": [("is_abuse", "1", 337, "train"), ("is_abuse", "1", 112, "validation"), ("is_abuse", "1", 129, "test"),
                  ("sex_harassment", "1", 96, "train"), ("sexist", "1", 16, "test")],
    "davidson_hate_offensive": [("class", "hate_speech", 1430), ("class", "offensive_language", 19190),
                                ("class", "neither", 4163)],
    "edos_sexism": [("label_sexist", "sexist", 4853), ("label_vector", "1.1 threats of harm", 80),
                    ("label_vector", "1.2 incitement and encouragement of harm", 36, "validation")],
    "ethos": [("is_hate", ">=0.5", 433), ("violence", ">=0.5", 142), ("directed", ">=0.5", 135)],
    "exist2021_sexism_en": [("task2", "sexual-violence", 344, "train"), ("task2", "sexual-violence", 198, "test"),
                            ("task1", "sexist", 2792)],
    "gab_hate_corpus": [("hd", "1", 2347), ("cv", "1", 154), ("vo", "1", 1747), ("cv", "1", 23, "test")],
    "hatexplain_mbib": [("category", "normal", 6251, "train"), ("category", "hatespeech", 4748, "train"),
                        ("category", "offensive", 548, "test")],
    "implicit_hate_latent_hatred": [("class", "implicit_hate", 7085), ("class", "explicit_hate", 1088),
                                    ("implicit_class", "threatening", 655)],
    "jigsaw_toxic_sample_detoxify": [("toxic", "1", 28, "train"), ("toxic", "1", 2, "test"), ("toxic", None, 25)],
    "olid": [("subtask_a", "OFF", 4400, "train"), ("subtask_a", "OFF", 240, "test"), ("subtask_c", "IND", 100, "test")],
    "online_misogyny_reddit": [("level_1", "Misogynistic", 516), ("personal_attack", "1", 35)],
    "reddit_cssrs_suicide_500": [("label", "Ideation", 171), ("label", "Supportive", 108), ("label", "Attempt", 45)],
    "reddit_suicidewatch_vs_teenagers_sample": [("class", "suicide", 1670)],
    "religious_hateful_memes": [("hateful", "1", 747), ("hateful", "0", 761)],
    "sdcnl_reddit_suicide_depression": [("is_suicide", "1", 787, "train"), ("is_suicide", "1", 193, "test")],
    "simplesafetytests": [("harm_area", "Child safety", 20), ("harm_area", "Suicide, Self-Harm, and Eating Disorders", 20)],
    "toxic_spans_civil": [("insult", ">=0.5", 8230), ("threat", ">=0.5", 121), ("identity_attack", ">=0.5", 378),
                          ("not_toxic", ">=0.5", 4825)],
    "toxigen_seed_statements": [("label", "hate", 425), ("label", "neutral", 297)],
    "twitter_suicidal_intention": [("intention", "1", 3998)],
    "twitter_suicidal_tendency_handlabelled": [("label", "2", 2017), ("label", "1", 2201), ("label", "0", 7221)],
}

MEME_IMAGES = {"cm_off_meme_sample": 1047, "religious_hateful_memes": 1508, "online_misogyny_reddit": 143}


class Loaded:
    """A loaded set with its columns read out once (Arrow -> Python lists is the slow part)."""

    def __init__(self, ds):
        self.ds = ds
        self.columns = ds.to_dict()

    def __getitem__(self, column: str) -> list:
        return self.columns[column]

    def __len__(self) -> int:
        return len(self.ds)


@pytest.fixture(scope="session")
def load():
    """Load a public set once per session (skipping when its folder is absent)."""
    cache = {}

    def _load(name: str) -> Loaded:
        require_shared_data(name)
        if name not in cache:
            cache[name] = Loaded(LOADERS[name](SHARED_DATA / name))
        return cache[name]

    return _load


def test_loaders_and_licenses_cover_the_same_folders():
    assert set(LOADERS) == set(EXPECTED) == set(LICENSES) == set(LABEL_COUNTS)
    if SHARED_DATA.exists():
        assert {p.name for p in SHARED_DATA.iterdir() if p.is_dir()} == set(LOADERS)


def test_licenses_are_spdx_ids_or_none_or_unclear():
    known = PERMISSIVE_LICENSES | {"GPL-3.0", "none", "unclear"}
    for name, license_id in LICENSES.items():
        assert set(license_id.split(" AND ")) <= known, name
    assert is_permissive("edos_sexism") and is_permissive("olid")
    assert not is_permissive("ethos") and not is_permissive("hatexplain_mbib") and not is_permissive("gab_hate_corpus")


@pytest.mark.shared_data
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_loader_rows_follow_the_contract_and_source_counts(name, load):
    ds = load(name)
    rows, splits = EXPECTED[name]
    assert tuple(ds.ds.column_names[: len(RAW_COLUMNS)]) == RAW_COLUMNS
    assert all(f.dtype == "string" for f in ds.ds.features.values())
    assert len(ds) == rows
    assert Counter(ds["split"]) == splits
    ids = ds["id"]
    assert all(isinstance(i, str) and i for i in ids) and len(set(ids)) == len(ids)
    assert all(t or i for t, i in zip(ds["text"], ds["image"]))
    assert all(t is None or (t == t.strip() and t) for t in ds["text"])
    if name not in ("cm_off_meme_sample", "religious_hateful_memes"):
        assert set(ds["group"]) == {""}


@pytest.mark.shared_data
@pytest.mark.parametrize("name", sorted(LABEL_COUNTS))
def test_label_counts_match_source_md(name, load):
    ds = load(name)
    for field, value, count, *split in LABEL_COUNTS[name]:
        values = [v for v, s in zip(ds[field], ds["split"]) if not split or s == split[0]]
        if isinstance(value, str) and value.startswith(">="):
            got = sum(v is not None and float(v) >= float(value[2:]) for v in values)
        else:
            got = sum(v == value for v in values)
        assert got == count, (field, value, split)


@pytest.mark.shared_data
@pytest.mark.parametrize("name", sorted(MEME_IMAGES))
def test_images_are_absolute_paths_that_exist(name, load):
    images = [p for p in load(name)["image"] if p is not None]
    assert len(images) == MEME_IMAGES[name]
    assert all(Path(p).is_absolute() and Path(p).is_file() for p in images)


@pytest.mark.shared_data
def test_meme_groups_keep_collections_and_reposts_together(load):
    cm_off = load("cm_off_meme_sample")
    assert set(cm_off["group"]) == {f"cm_off:{p}" for p in ("eng", "meme", "ramdev", "gay", "rhea", "fille")}
    religious = load("religious_hateful_memes")
    assert all(religious["group"]) and len(set(religious["group"])) < len(religious)


# ---- broken files: synthetic placeholder data only ----------------------------------------------------

def test_missing_column_names_file_and_column(tmp_path):
    folder = tmp_path / "davidson_hate_offensive"
    folder.mkdir()
    (folder / "labeled_data.csv").write_text(
        ",count,hate_speech,offensive_language,neither,tweet\n0,3,0,0,3,placeholder text one\n")
    with pytest.raises(DataError, match=r"labeled_data\.csv.*'class'"):
        LOADERS["davidson_hate_offensive"](folder)


def test_missing_column_in_a_tab_separated_file(tmp_path):
    for split in ("train", "test"):
        (tmp_path / f"ghc_{split}.tsv").write_text("text\thd\tvo\nplaceholder words\t0\t0\n")
    with pytest.raises(DataError, match=r"ghc_train\.tsv.*'cv'"):
        LOADERS["gab_hate_corpus"](tmp_path)


def test_missing_file_names_the_folder_and_file(tmp_path):
    with pytest.raises(DataError, match=rf"{tmp_path}.*edos_labelled_aggregated\.csv"):
        LOADERS["edos_sexism"](tmp_path)


def test_unexpected_label_value_is_an_error_not_dropped(tmp_path):
    (tmp_path / "labeled_data.csv").write_text(
        ",count,hate_speech,offensive_language,neither,class,tweet\n0,3,0,0,3,7,placeholder text\n")
    with pytest.raises(DataError, match=r"'class'.*'7'"):
        LOADERS["davidson_hate_offensive"](tmp_path)


def test_texts_are_stripped_unescaped_and_empty_rows_dropped(tmp_path):
    (tmp_path / "labeled_data.csv").write_text(
        ",count,hate_speech,offensive_language,neither,class,tweet\n"
        "0,3,0,0,3,2,  placeholder &amp; words  \n"
        '1,3,0,0,3,2," "\n')
    ds = LOADERS["davidson_hate_offensive"](tmp_path)
    assert ds["text"] == ["placeholder & words"] and ds["class"] == ["neither"] and ds["id"] == ["0"]


def test_truncated_user_rows_keep_their_complete_posts():
    from moderation.data.sources.self_harm_sets import _parse_posts

    assert _parse_posts("['first post', 'second post']") == ["first post", "second post"]
    assert _parse_posts("['first post', \"second's post\", 'third po") == ["first post", "second's post"]


def _convabuse_file(path: Path, split: str, votes: list[list[str]]) -> None:
    """A synthetic ConvAbuse split: one row per entry of `votes`, each an annotator's severity or ""."""
    from moderation.data.sources.aggregated_sets import CONVABUSE_BLOCK

    n_annotators = len(votes[0])
    header = ["example_id", "conv_id", "prev_agent", "prev_user", "agent", "user", "bot"]
    header += [f"Annotator{a + 1}_{field}" for a in range(n_annotators) for field in CONVABUSE_BLOCK]
    lines = [",".join(header)]
    for i, row in enumerate(votes):
        cells = [f"{split}-{i}", "c", "hello", "", "hi", f"placeholder utterance {i}", "bot"]
        for severity in row:
            if not severity:
                cells += [""] * len(CONVABUSE_BLOCK)
                continue
            one_hot = ["1" if f == f"is_abuse.{severity}" else "0" for f in CONVABUSE_BLOCK[:5]]
            # Repeat annotations ("1, 1") count by their first value; sexist is ticked by abusive votes.
            sexist = '"1, 0"' if severity.startswith("-") else "0"
            cells += one_hot + ["0", "0", "0", "0", sexist] + ["0"] * 7
        lines.append(",".join(cells))
    path.write_text("\n".join(lines) + "\n")


def test_convabuse_majority_counts_only_annotators_who_labelled(tmp_path):
    votes = [["-1", "-2", "1"], ["-3", "1", ""], ["1", "1", "-1"], ["", "", ""]]
    for split in ("train", "valid", "test"):
        _convabuse_file(tmp_path / f"ConvAbuseEMNLP{split}.csv", split, votes)
    ds = LOADERS["convabuse"](tmp_path)
    train = ds.filter(lambda r: r["split"] == "train")
    # 2 of 3 abusive -> 1; 1 of 2 is not more than half -> 0; 1 of 3 -> 0; nobody labelled -> None.
    assert train["is_abuse"] == ["1", "0", "0", None]
    assert train["sexist"] == ["1", "0", "0", None]
    assert Counter(ds["split"]) == {"train": 4, "validation": 4, "test": 4}


# ---- configs/all_datasets.yaml ---------------------------------------------------------------------------

def test_config_is_valid_and_lists_every_loader():
    config = load_config(CONFIG)
    assert set(config.datasets) == set(LOADERS)
    for name, ds in config.datasets.items():
        assert ds.loader == name
        assert Path(ds.path) == (SHARED_DATA / name).resolve()
    for category in config.categories:
        assert category.description and 4 <= len(category.seed_phrases) <= 6


@pytest.mark.shared_data
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_config_label_maps_cover_every_raw_value(name, load):
    """Each raw value is listed (None = unknown), each listed value occurs, at_least fields are numbers."""
    ds = load(name)
    label_map = _config().datasets[name].label_map
    assert label_map, f"{name} maps no category"
    for category, rule in label_map.items():
        occurring = set()
        for field in rule.fields:
            assert field in ds.columns, (category, field)
            occurring |= set(ds[field]) - {None}
        if rule.at_least is not None:
            assert all(float(v) == float(v) for v in occurring), (category, "non-numeric")
            continue
        listed = set(rule.positive) | set(rule.negative) | set(rule.unknown)
        assert occurring <= listed, (category, sorted(occurring - listed))
        assert listed <= occurring, (category, sorted(listed - occurring))


def _config_with(tmp_path, **dataset):
    from moderation.config import config_from_dict
    from tests.synthetic import tiny_config, write_dataset

    data = write_dataset(tmp_path / "d.jsonl", n=20, seed=1)
    raw = tiny_config(data, "minilm-package", tmp_path / "run")
    raw["datasets"]["extra"] = {"loader": "jsonl", "path": str(data), **dataset}
    raw["datasets"]["synthetic"]["license"] = "CC0-1.0"
    raw["run"] = {**raw.get("run", {}), "permissive_only": True}
    return config_from_dict(raw)


def test_permissive_only_needs_a_stated_license_for_jsonl_data(tmp_path):
    """A jsonl file could hold anything: a shipped model may train on it only when its license is stated and
    permissive, or it is the platform's own posts."""
    from moderation.data.build import check_permissive

    with pytest.raises(DataError, match=r"datasets\.extra: no license stated .*datasets\.extra\.license"):
        check_permissive(_config_with(tmp_path))
    with pytest.raises(DataError, match=r"datasets\.extra: license 'GPL-3.0'"):
        check_permissive(_config_with(tmp_path, license="GPL-3.0"))
    with pytest.raises(DataError, match=r"license 'CC-BY-4.0 AND CC-BY-NC-4.0'"):
        check_permissive(_config_with(tmp_path, license="CC-BY-4.0 AND CC-BY-NC-4.0"))
    for fine in ("CC-BY-4.0", "MIT", "own"):
        check_permissive(_config_with(tmp_path, license=fine))


def test_a_license_is_stated_only_where_the_project_has_none_on_record(tmp_path):
    from moderation.config import ConfigError, DatasetConfig

    with pytest.raises((ConfigError, ValueError), match=r"license is stated only for loaders 'jsonl' and 'hub'"):
        DatasetConfig(loader="olid", path="x", license="MIT")
    with pytest.raises((ConfigError, ValueError), match=r"license: empty"):
        DatasetConfig(loader="jsonl", path="x", license=" ")


def test_the_shipped_config_states_every_license_and_review_exports_are_own_data(tmp_path):
    from eval.promotion import add_reviewed
    from moderation.data.build import check_permissive, dataset_license

    config = load_config(REPO / "configs" / "default.yaml")
    assert config.run.permissive_only
    check_permissive(config)  # the hard negatives are the project's own text, Apache-2.0
    assert dataset_license(config.datasets["hard_negatives"]) == "Apache-2.0"
    retrained = add_reviewed(config.model_copy(deep=True), [tmp_path / "reviewed.jsonl"])
    assert dataset_license(retrained.datasets["reviewed"]) == "own"
    check_permissive(retrained)
