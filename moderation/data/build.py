"""From a config to labelled, split data: one `datasets.DatasetDict` with train / validation / test.

Each configured dataset is loaded by its loader (a public set in ../shared/data, a generic JSONL file, or a
hub id), its raw labels mapped onto the config's categories, and its rows assigned to splits. Rows with no
known label are dropped (they teach nothing); an empty result is an error that names the dataset.
"""

from __future__ import annotations

import logging
from pathlib import Path

from moderation.config import UNRECORDED_LOADERS, Config, DatasetConfig, LabelRule
from moderation.data.generic import label_field, read_jsonl_rows, target_names
from moderation.data.labelmap import make_labeller
from moderation.data.records import LABEL_MASK, SPLITS, DataError
from moderation.data.splits import assign_split, normalise_text

log = logging.getLogger(__name__)

KEEP_COLUMNS = ["id", "text", "image", "source", "split", "group", "labels", "label_mask"]
TARGET = "target"  # optional column (build_splits(keep_target=True)): the group(s) a post is about, for audits
# Raw fields that name a targeted group: generic JSONL `target`, ToxiGen's `target_group`.
TARGET_FIELDS = ("target", "target_group")


def load_raw(name: str, ds: DatasetConfig):
    """The raw rows of a public-set or hub dataset, as a `datasets.Dataset` (RAW_COLUMNS + raw labels)."""
    if ds.loader == "hub":
        return _load_hub(name, ds)
    from moderation.data.sources import LOADERS

    if ds.loader not in LOADERS:
        raise DataError(f"datasets.{name}.loader: unknown loader {ds.loader!r} (known: jsonl, hub, {', '.join(sorted(LOADERS))})")
    if not Path(ds.path).exists():
        raise DataError(f"datasets.{name}.path: {ds.path} does not exist")
    return LOADERS[ds.loader](Path(ds.path))


def label_map_for(ds: DatasetConfig, categories: list[str]) -> dict[str, LabelRule]:
    """The dataset's label map; generic JSONL files need none (their labels already are our categories)."""
    if ds.loader == "jsonl" and not ds.label_map:
        return {c: LabelRule(field=label_field(c), positive=["1"], negative=["0"]) for c in categories}
    return ds.label_map


def _load_hub(name: str, ds: DatasetConfig):
    """A hub dataset (for users who are online): `text_field` becomes the text, other columns stay raw labels."""
    import datasets

    if not ds.text_field:
        raise DataError(f"datasets.{name}.text_field: required for loader 'hub'")
    raw = datasets.load_dataset(ds.path, split=ds.hub_split or "train")
    if ds.text_field not in raw.column_names:
        raise DataError(f"datasets.{name}.text_field: column {ds.text_field!r} not in {raw.column_names}")
    return raw.map(
        lambda row, idx: {"id": str(row.get("id", idx)), "text": row[ds.text_field], "image": None,
                          "split": "", "group": "", **{k: None if v is None else str(v) for k, v in row.items()
                                                       if k not in ("id", ds.text_field)}},
        with_indices=True,
    )


def with_target(dataset):
    """`dataset` plus a `target` column (list of group names, [] when none) from its raw TARGET_FIELDS."""
    import datasets

    fields = [f for f in TARGET_FIELDS if f in dataset.column_names]
    features = dataset.features.copy()
    # Explicit type: a batch whose rows name no target would otherwise be inferred as a list of nulls.
    features[TARGET] = datasets.Sequence(datasets.Value("string"))
    return dataset.map(lambda row: {TARGET: [t for f in fields for t in target_names(row[f])]},
                       features=features, desc="target groups")


def load_labelled(name: str, ds: DatasetConfig, config: Config, keep_target: bool = False):
    """One dataset with `labels`/`label_mask` and its split assigned (and `target`, with `keep_target`)."""
    categories = config.category_names
    if ds.loader == "jsonl":
        import datasets

        raw = datasets.Dataset.from_list(read_jsonl_rows(Path(ds.path), categories))
    else:
        raw = load_raw(name, ds)
    if ds.max_samples is not None and len(raw) > ds.max_samples:
        raw = raw.shuffle(seed=config.split.seed).select(range(ds.max_samples))
    labelled = raw.map(make_labeller(label_map_for(ds, categories), categories, name), desc=f"labels {name}")
    labelled = labelled.filter(lambda row: any(row[LABEL_MASK]), desc=f"drop unlabelled {name}")
    if len(labelled) == 0:
        raise DataError(f"datasets.{name}: no rows left with a known label (check its label_map and path)")
    has_validation = "validation" in set(labelled["split"])
    split_cfg = config.split

    def add_split(row: dict) -> dict:
        if ds.use != "train_eval":
            return {"split": "test" if ds.use == "eval_only" else "train", "source": name}
        split = assign_split(
            {**row, "source": name}, split_cfg.seed, split_cfg.validation_fraction, split_cfg.test_fraction,
            has_validation)
        return {"split": split, "source": name}

    labelled = labelled.map(add_split, desc=f"split {name}")
    if keep_target:
        return with_target(labelled).select_columns(KEEP_COLUMNS + [TARGET])
    return labelled.select_columns(KEEP_COLUMNS)


def dataset_license(ds: DatasetConfig) -> str | None:
    """The license on record for a public set's loader, or the one the config states for 'jsonl' / 'hub' data."""
    from moderation.data.sources import LICENSES

    return ds.license if ds.loader in UNRECORDED_LOADERS else LICENSES.get(ds.loader)


def check_permissive(config: Config) -> None:
    """A shipped model may only learn from permissively licensed data (or the platform's own posts); name every
    dataset that is not, or whose license nobody stated."""
    from moderation.data.sources import LOADERS, OWN_DATA, license_is_permissive

    bad = []
    for name, ds in config.datasets.items():
        if ds.loader not in LOADERS and ds.loader not in UNRECORDED_LOADERS:
            continue  # an unknown loader is refused by name when the dataset loads
        license_id = dataset_license(ds)
        if license_id is None:
            bad.append(f"datasets.{name}: no license stated (loader {ds.loader!r}); set datasets.{name}.license to "
                       f"its SPDX id, or '{OWN_DATA}' for your platform's own posts")
        elif license_id != OWN_DATA and not license_is_permissive(license_id):
            bad.append(f"datasets.{name}: license {license_id!r}")
    if bad:
        raise DataError("run.permissive_only is set, but these datasets are not known to be permissively "
                        "licensed:\n  " + "\n  ".join(bad))


def _drop_superseded(merged, config: Config):
    """Drop rows whose text also occurs in a dataset with `supersedes_duplicates` (e.g. review exports)."""
    winners = {n for n, d in config.datasets.items() if d.supersedes_duplicates}
    if not winners:
        return merged
    texts = {normalise_text(t) for t, s in zip(merged["text"], merged["source"]) if s in winners and t}
    before = len(merged)
    merged = merged.filter(lambda row: row["source"] in winners or not row["text"]
                           or normalise_text(row["text"]) not in texts, desc="drop superseded duplicates")
    log.info("dropped %d rows superseded by %s", before - len(merged), sorted(winners))
    return merged


def build_splits(config: Config, only_eval: bool = False, keep_target: bool = False):
    """All configured datasets -> DatasetDict(train, validation, test), leak-free across datasets.

    `keep_target` adds a `target` column (see `with_target`) for audits that slice by targeted group.
    """
    import datasets

    if config.run.permissive_only:
        check_permissive(config)
    parts = []
    for name, ds in config.datasets.items():
        part = load_labelled(name, ds, config, keep_target)
        log.info("%s: %d labelled rows", name, len(part))
        parts.append(part)
    merged = _drop_superseded(datasets.concatenate_datasets(parts), config)
    splits = {s: merged.filter(lambda row, s=s: row["split"] == s, desc=f"collect {s}") for s in SPLITS}
    held_out = {normalise_text(t) for s in ("validation", "test") for t in splits[s]["text"] if t}
    before = len(splits["train"])
    splits["train"] = splits["train"].filter(lambda row: not row["text"] or normalise_text(row["text"]) not in held_out,
                                             desc="drop train rows leaking into validation/test")
    if before - len(splits["train"]):
        log.info("dropped %d training rows whose text also occurs in validation or test", before - len(splits["train"]))
    if not only_eval and len(splits["train"]) == 0:
        raise DataError("no training rows after splitting: every configured dataset is eval_only or empty")
    return datasets.DatasetDict(splits)
