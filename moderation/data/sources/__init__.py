"""Loaders for the public datasets in ../shared/data, one per folder, and the license of each.

`LOADERS[folder_name](root)` returns a `datasets.Dataset` in the row contract of `moderation.data.records`
(id, text, image, split, group, then that set's RAW label fields as strings or None). Mapping raw values
onto our categories is the config's job (`label_map`), so a loader never decides what counts as harmful.

`LICENSES[folder_name]` is the license of the copy we hold, from its SOURCE.md: an SPDX id, "none" (the copy
states no license) or "unclear" (a license is claimed somewhere but unverified, or does not cover the data).
`is_permissive` lets a config that is meant to ship a model be checked for permissive-only sources.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import datasets

from moderation.data.sources.aggregated_sets import (
    load_convabuse,
    load_online_misogyny_reddit,
    load_toxic_spans_civil,
)
from moderation.data.sources.meme_sets import load_cm_off_meme_sample, load_religious_hateful_memes
from moderation.data.sources.self_harm_sets import (
    load_reddit_cssrs_suicide_500,
    load_reddit_suicidewatch_vs_teenagers_sample,
    load_sdcnl_reddit_suicide_depression,
    load_twitter_suicidal_intention,
    load_twitter_suicidal_tendency_handlabelled,
)
from moderation.data.sources.text_sets import (
    load_davidson_hate_offensive,
    load_edos_sexism,
    load_ethos,
    load_exist2021_sexism_en,
    load_gab_hate_corpus,
    load_hatexplain_mbib,
    load_implicit_hate_latent_hatred,
    load_jigsaw_toxic_sample_detoxify,
    load_olid,
    load_simplesafetytests,
    load_toxigen_seed_statements,
)

LOADERS: dict[str, Callable[[Path], datasets.Dataset]] = {
    "cm_off_meme_sample": load_cm_off_meme_sample,
    "convabuse": load_convabuse,
    "davidson_hate_offensive": load_davidson_hate_offensive,
    "edos_sexism": load_edos_sexism,
    "ethos": load_ethos,
    "exist2021_sexism_en": load_exist2021_sexism_en,
    "gab_hate_corpus": load_gab_hate_corpus,
    "hatexplain_mbib": load_hatexplain_mbib,
    "implicit_hate_latent_hatred": load_implicit_hate_latent_hatred,
    "jigsaw_toxic_sample_detoxify": load_jigsaw_toxic_sample_detoxify,
    "olid": load_olid,
    "online_misogyny_reddit": load_online_misogyny_reddit,
    "reddit_cssrs_suicide_500": load_reddit_cssrs_suicide_500,
    "reddit_suicidewatch_vs_teenagers_sample": load_reddit_suicidewatch_vs_teenagers_sample,
    "religious_hateful_memes": load_religious_hateful_memes,
    "sdcnl_reddit_suicide_depression": load_sdcnl_reddit_suicide_depression,
    "simplesafetytests": load_simplesafetytests,
    "toxic_spans_civil": load_toxic_spans_civil,
    "toxigen_seed_statements": load_toxigen_seed_statements,
    "twitter_suicidal_intention": load_twitter_suicidal_intention,
    "twitter_suicidal_tendency_handlabelled": load_twitter_suicidal_tendency_handlabelled,
}

LICENSES: dict[str, str] = {
    "cm_off_meme_sample": "none",  # sample of a set whose full version is gated behind an agreement form
    "convabuse": "CC-BY-4.0",
    "davidson_hate_offensive": "MIT",
    "edos_sexism": "CC0-1.0",
    "ethos": "GPL-3.0",
    # The team repo we copied from is GPL-3.0; the organisers gave the data to registered participants only.
    "exist2021_sexism_en": "unclear",
    "gab_hate_corpus": "none",  # the copy has none; the official OSF release's license was not checked
    "hatexplain_mbib": "MIT AND GPL-3.0",  # HateXplain data MIT, processed file from a GPL-3.0 repository
    "implicit_hate_latent_hatred": "CC-BY-4.0",  # license file of the redistributing copy
    # Detoxify's test fixtures (Apache-2.0 repo) of Kaggle data said to be CC0 / CC-BY-SA-3.0: not verified.
    "jigsaw_toxic_sample_detoxify": "unclear",
    "olid": "CC-BY-4.0",  # the redistributing repo's license; OLID itself states none
    "online_misogyny_reddit": "MIT",
    "reddit_cssrs_suicide_500": "unclear",  # copy has none; the Zenodo record is listed as CC BY, unverified
    "reddit_suicidewatch_vs_teenagers_sample": "none",
    "religious_hateful_memes": "none",
    "sdcnl_reddit_suicide_depression": "none",
    "simplesafetytests": "CC-BY-4.0",
    "toxic_spans_civil": "CC0-1.0",
    "toxigen_seed_statements": "MIT",
    "twitter_suicidal_intention": "none",
    "twitter_suicidal_tendency_handlabelled": "none",
}

# Licenses that allow shipping a model trained on the data (attribution aside). GPL and unknowns are not.
PERMISSIVE_LICENSES = frozenset({"MIT", "CC0-1.0", "CC-BY-4.0", "Apache-2.0"})


# The license a config gives a platform's own posts (review exports): theirs to train on, not a public set's.
OWN_DATA = "own"


def license_is_permissive(license_id: str) -> bool:
    """True when every part of an SPDX expression joined by " AND " is in PERMISSIVE_LICENSES.

    >>> license_is_permissive("CC-BY-4.0"), license_is_permissive("MIT AND GPL-3.0")
    (True, False)
    """
    return all(part in PERMISSIVE_LICENSES for part in license_id.split(" AND "))


def is_permissive(folder_name: str) -> bool:
    """True when every license the dataset is under is in PERMISSIVE_LICENSES."""
    return license_is_permissive(LICENSES[folder_name])


__all__ = ["LICENSES", "LOADERS", "OWN_DATA", "PERMISSIVE_LICENSES", "is_permissive", "license_is_permissive"]
