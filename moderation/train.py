"""Training: config -> labelled splits -> encoder features -> a fitted ModerationModel.

Two paths share the head, the losses and early stopping:
- frozen encoders (the default): embeddings are computed once, cached, and the head trains in seconds;
- fine-tuning (`text_encoder.finetune: full | lora`): the text encoder runs inside the loop (use a GPU);
- adapt, then freeze (`text_encoder.adapt`): LoRA on a capped sample first (the fine-tuning path, one head), the
  adapter merged, then the frozen path on every row with the adapted encoder (affordable on a CPU).

Metrics are injected (`compute_metrics(labels, label_mask, scores) -> float`, higher is better), so this
module never imports the evaluation package. `moderation.training.train_run` wraps this into a run directory. Training stops early when the mean validation PR-AUC stops
improving and keeps the best epoch's weights.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from moderation.config import Config, config_from_dict
from moderation.features import Features, featurize
from moderation.lexical import LexicalModel
from moderation.losses import (SourceIntercepts, downsample_negatives, masked_bce, masked_focal, positive_weights,
                               prior_correction, source_balanced_weights)
from moderation.model import ModerationModel
from moderation.scoring import run_model
from moderation.zeroshot import ZeroShotScorer, build_prototypes, calibrate

log = logging.getLogger(__name__)

MetricFn = Callable[[np.ndarray, np.ndarray, np.ndarray], float]


@dataclass
class TrainResult:
    model: ModerationModel
    text_encoder: object | None
    image_encoder: object | None
    splits: object  # datasets.DatasetDict
    features: dict[str, Features]
    history: list[dict]
    zero_shot_classes: dict[str, str]  # category -> calibration method
    train_positives: dict[str, int]
    seconds: dict[str, float]  # wall time per stage: data, encode, fit
    lexical: LexicalModel | None = None  # the fitted lexical view, when `lexical.weight` > 0


def with_evasion_copies(train_split, rate: float, kind: str, seed: int):
    """The training rows, then a rewritten copy (`perturb_rows(rate, seed, kind)`) of a seeded share of the rows
    with text, labels kept, id suffixed with the kind. Copies stay in the training split: validation, test and
    every held-out source are scored as written."""
    import datasets

    from moderation.encoders.perturb import perturb_rows

    texts = train_split["text"]
    rewritten = perturb_rows(texts, rate, seed, kind)
    picked = [i for i, (before, after) in enumerate(zip(texts, rewritten)) if before and after != before]
    if not picked:
        return train_split
    copies = train_split.select(picked).map(
        lambda row, j: {"text": rewritten[picked[j]], "id": f"{row['id']}~{kind}"}, with_indices=True,
        desc="evasion copies")
    log.info("evasion augmentation: %d rewritten copies (%s) added to %d training rows", len(copies), kind,
             len(train_split))
    return datasets.concatenate_datasets([train_split, copies])


def pick_device(setting: str) -> str:
    if setting == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if setting == "cuda" and not torch.cuda.is_available():
        raise ValueError("train.device: 'cuda' requested but no GPU is available")
    return setting


def reads_text(config: Config) -> bool:
    """Whether the run has a text encoder: an image-only head reads no captions, but still needs the text encoder
    for the text in pictures (OCR)."""
    return config.head.fusion != "image_only" or config.image_encoder.ocr


def build_encoders(config: Config, adapter_dir: Path | None = None):
    """The run's encoders; `adapter_dir`: a LoRA adapter to merge into the text encoder (`text_encoder.adapt`)."""
    from moderation.encoders.text import run_text_encoder

    text = run_text_encoder(config.text_encoder, adapter_dir) if reads_text(config) else None
    image = None
    if config.image_encoder.kind != "none" and config.head.fusion != "text_only":
        from moderation.encoders.image import build_image_encoder

        image = build_image_encoder(config.image_encoder)
    return text, image


def split_features(config: Config, splits, text_encoder, image_encoder, progress: bool) -> dict[str, Features]:
    cache = Path(config.run.cache_dir) if config.text_encoder.finetune == "frozen" else None
    from moderation.encoders.ocr import build_ocr_reader

    # A text-only head never sees pictures, so their text is not read either.
    ocr_reader = build_ocr_reader(config.image_encoder) if config.head.fusion != "text_only" else None
    out = {}
    for name in ("train", "validation", "test"):
        columns = splits[name].select_columns(["text", "image", "source", "labels", "label_mask"]).to_dict()
        if config.head.fusion == "image_only":  # the picture alone: captions are not read
            columns["text"] = [None] * len(columns["text"])
        out[name] = featurize(columns, len(config.categories), text_encoder, image_encoder, cache, progress,
                              ocr_reader=ocr_reader, ocr_as_image_features=config.head.image_branch == "trained")
    return out


def zero_shot_setup(config: Config, text_encoder, features: dict[str, Features]) -> tuple[ZeroShotScorer | None, dict]:
    """Which classes are zero-shot (too few training positives), and their calibrated scorer."""
    names = config.category_names
    train = features["train"]
    positives = (train.labels * train.label_mask).sum(0)
    chosen = [c for c, p in zip(names, positives) if p < config.zero_shot.min_train_positives]
    if not chosen or text_encoder is None:
        return None, {}
    prototypes, proto_class, contrast = build_prototypes(text_encoder, config.categories, names)
    scorer = ZeroShotScorer(prototypes, proto_class, len(names), text_encoder.similarity_dims, contrast,
                            config.zero_shot.contrast_weight)
    sims = {}
    for split in ("train", "validation"):
        f = features[split]
        b = f.batch(np.arange(len(f)))
        with torch.no_grad():
            sims[split] = scorer.similarity(b["text_windows"], b["owner"], len(f)).numpy()
    methods = {}
    for name in chosen:
        c = names.index(name)
        # Calibrate on every known label of this class in train + validation (few by definition).
        sim = np.concatenate([sims["train"][:, c], sims["validation"][:, c]])
        labels = np.concatenate([features["train"].labels[:, c], features["validation"].labels[:, c]])
        mask = np.concatenate([features["train"].label_mask[:, c], features["validation"].label_mask[:, c]])
        scale, offset, method = calibrate(sim, labels, mask)
        scorer.scale[c], scorer.offset[c], scorer.active[c] = scale, offset, True
        methods[name] = method
        log.info("zero-shot %s: calibrated by %s (scale %.2f, offset %.2f)", name, method, scale, offset)
    return scorer, methods


def nsfw_zero_shot_class(config: Config, train: Features) -> int | None:
    """The class open_nsfw scores on images: set, the encoder is open_nsfw, and few image positives to learn from."""
    name = config.zero_shot.nsfw_category
    # A text_head model scores pictures without image training rows, so open_nsfw is its only sexual evidence.
    seen = "nsfw" in train.extras or config.head.image_branch == "text_head"
    if name is None or config.image_encoder.kind != "opennsfw" or not seen:
        return None
    c = config.category_names.index(name)
    image_positives = int((train.labels[:, c] * train.label_mask[:, c] * train.has_image).sum())
    return c if image_positives < config.zero_shot.min_train_positives else None


def fit_lexical(config: Config, splits, features: dict[str, Features], keep: np.ndarray,
                trainable: np.ndarray) -> tuple[LexicalModel, dict[str, Features]]:
    """The lexical view fitted on the training rows the head trains on (its trainable classes only), and every
    split's features with their lexical logits."""
    started = time.perf_counter()
    cfg = config.lexical
    texts = {name: splits[name]["text"] for name in features}
    train = features["train"]
    lexical = LexicalModel(cfg.word_features, cfg.char_features, cfg.min_df, cfg.C, config.text_encoder.normalize,
                           config.text_encoder.platform_markup == "strip", cfg.min_sources)
    sources = np.asarray(splits["train"]["source"])[keep]
    lexical.fit([texts["train"][i] for i in keep], train.labels[keep], train.label_mask[keep], trainable, sources,
                source_intercepts=config.loss.source_intercepts)
    features = {name: f.with_lexical(lexical, texts[name]) for name, f in features.items()}
    log.info("lexical view fitted and applied in %.0f s", time.perf_counter() - started)
    return lexical, features


def member_seeds(seed: int, members: int) -> list[int]:
    """Each head's seed: the first is `seed` itself (one head trains exactly as before), the others are drawn from
    (seed, k), so the heads of `train.seed=1` share none with those of `train.seed=0`.

    >>> member_seeds(0, 1)
    [0]
    >>> s = member_seeds(0, 3); s[0], len(set(s + member_seeds(1, 3)))
    (0, 6)
    """
    return [seed] + [int(np.random.SeedSequence([seed, k]).generate_state(1)[0]) for k in range(1, members)]


def _loss_fn(config: Config, pos_weight: torch.Tensor | None):
    def loss(logit, label, mask, weight=None):
        if config.loss.kind == "focal":
            return masked_focal(logit, label, mask, config.loss.focal_gamma, pos_weight, weight)
        return masked_bce(logit, label, mask, pos_weight, weight)
    return loss


def fit(model: ModerationModel, train: Features, validation: Features, config: Config, compute_metrics: MetricFn,
        trainable: np.ndarray, device: str, progress: bool = True, log_path: Path | None = None,
        text_encoder=None, texts: dict[str, list[str]] | None = None, sources=None, seed: int | None = None,
        member: int | None = None) -> list[dict]:
    """Train with early stopping on mean validation PR-AUC; restores the best epoch's weights.

    With `text_encoder` (fine-tuning) the encoder runs in the loop on `texts["train"]` and validation is
    re-encoded every epoch; otherwise the head trains on the cached window embeddings in `train`.
    `sources` (N,): each training row's source, needed by `loss.balance: per_source` and `loss.source_intercepts`
    (whose offsets train beside the head and are dropped when it is done). `seed` (default
    `train.seed`) orders the batches and draws dropout; `member` marks this head's epochs in the log.
    """
    from tqdm.auto import tqdm

    cfg = config.train
    seed = cfg.seed if seed is None else seed
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    row_weights = None
    if config.loss.balance == "per_source":
        if sources is None:
            raise ValueError("loss.balance: per_source needs each training row's source")
        row_weights = torch.from_numpy(source_balanced_weights(train.labels, train.label_mask, sources,
                                                               config.loss.max_row_weight)).to(device)
        loss_fn = _loss_fn(config, None)  # the balance already weighs each source's positives against its negatives
    else:
        pw = positive_weights(train.labels, train.label_mask, config.loss.max_pos_weight)
        loss_fn = _loss_fn(config, torch.from_numpy(pw).to(device) if config.loss.pos_weight == "auto" else None)
    trainable_t = torch.from_numpy(trainable).to(device)
    model.to(device)
    groups = [{"params": list(model.head.parameters()), "lr": cfg.lr}]
    intercepts = None
    if config.loss.source_intercepts:
        if sources is None:
            raise ValueError("loss.source_intercepts needs each training row's source")
        intercepts = SourceIntercepts(train.labels, train.label_mask, sources).to(device)
        # Not decayed: an intercept is a base rate, and shrinking it would hand part of it back to the head.
        groups.append({"params": [intercepts.offsets], "lr": cfg.lr, "weight_decay": 0.0})
    if text_encoder is not None:
        text_encoder.to(device)
        groups.append({"params": [p for p in text_encoder.parameters() if p.requires_grad], "lr": cfg.encoder_lr})
    optimiser = torch.optim.AdamW(groups, weight_decay=cfg.weight_decay)
    best, best_state, stale, history = -np.inf, None, 0, []
    bar = tqdm(range(cfg.epochs), desc="train" if member is None else f"train head {member + 1}", unit="epoch",
               disable=not progress)
    for epoch in bar:
        started = time.time()
        train_loss = _epoch(model, train, config, loss_fn, trainable_t, optimiser, rng, device, text_encoder, texts,
                            row_weights, intercepts)
        val = validation if text_encoder is None else _encode_in_loop(text_encoder, texts["validation"], validation, device)
        val_scores = run_model(model, val, device=device).fused
        metric = compute_metrics(validation.labels, validation.label_mask & trainable, val_scores)
        record = {**({"member": member} if member is not None else {}),
                  **({"encoder": config.text_encoder.finetune} if text_encoder is not None else {}),
                  "epoch": epoch + 1, "train_loss": train_loss,
                  "val_mean_average_precision": metric, "seconds": round(time.time() - started, 2)}
        history.append(record)
        if log_path:
            with open(log_path, "a") as fh:
                fh.write(json.dumps(record) + "\n")
        bar.set_postfix(loss=f"{train_loss:.4f}", val_ap=f"{metric:.4f}")
        if metric > best + 1e-4:
            state = {"head": model.state_dict(), "encoder": text_encoder.state_dict() if text_encoder is not None else None}
            best, best_state, stale = metric, copy.deepcopy(state), 0
        else:
            stale += 1
            if stale >= cfg.patience:
                log.info("early stop after epoch %d (best mean val PR-AUC %.4f)", epoch + 1, best)
                break
    if best_state is not None:
        model.load_state_dict(best_state["head"])
        if text_encoder is not None:
            text_encoder.load_state_dict(best_state["encoder"])
    model.eval()
    return history


def _epoch(model, train: Features, config: Config, loss_fn, trainable_t, optimiser, rng, device: str,
           text_encoder=None, texts=None, row_weights: torch.Tensor | None = None,
           intercepts: SourceIntercepts | None = None) -> float:
    model.train()
    if text_encoder is not None:
        text_encoder.train()
    total, steps = 0.0, 0
    if text_encoder is None:
        order = rng.permutation(len(train))
        batches = [order[i:i + config.train.batch_size] for i in range(0, len(train), config.train.batch_size)]
    else:
        batches = texts["train_batches"](rng)
    for idx in batches:
        inputs = train.batch(idx, device)
        if text_encoder is not None:
            inputs["text_windows"], inputs["owner"] = encode_batch(text_encoder, texts["train_windows"], idx, device)
        label, mask = train.targets(idx, device)
        mask = mask & trainable_t  # zero-shot classes are calibrated, not trained
        weight = row_weights[torch.as_tensor(idx, device=device)] if row_weights is not None else None
        logits = model(**inputs)
        if intercepts is not None:
            offset = intercepts(idx)
            logits = {key: value if value is None else value + offset for key, value in logits.items()}
        loss = loss_fn(logits["fused"], label, mask, weight)
        if config.loss.unimodal_weight and config.head.fusion in ("late", "concat"):
            # Each modality's own head also learns, on the posts that have that modality.
            for key, present in (("text", inputs["has_text"]), ("image", inputs["has_image"])):
                if present.any():
                    loss = loss + config.loss.unimodal_weight * loss_fn(logits[key], label, mask & present.unsqueeze(1),
                                                                        weight)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        total, steps = total + loss.item(), steps + 1
    if text_encoder is not None:
        text_encoder.eval()
    return total / max(steps, 1)


def bucketed_batches(window_lengths: list[list[int]], batch_size: int, max_tokens: int, rng) -> list[np.ndarray]:
    """Length bucketing for fine-tuning (`moderation.encoders.text.length_batches` over whole texts): texts
    sorted by their longest window, cut into batches of at most `batch_size` texts and `max_tokens` padded
    tokens (windows x longest window; a text over the budget goes alone), the batch order shuffled by `rng`.

    >>> [b.tolist() for b in bucketed_batches([[3], [250], [5], [4, 2]], 4, 256, np.random.default_rng(0))]
    [[0, 3, 2], [1]]
    """
    from moderation.encoders.text import length_batches

    batches = length_batches([max(lengths, default=0) for lengths in window_lengths], batch_size, max_tokens,
                             windows=[len(lengths) for lengths in window_lengths])
    return [batches[j] for j in rng.permutation(len(batches))]


def encode_batch(text_encoder, windows_per_text: list[list[list[int]]], idx, device: str,
                 bf16: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The fine-tuning forward pass for texts `idx`: their windows padded and encoded with gradients, and each
    window's position in `idx`. bf16 autocast (default: where the CPU multiplies bf16 natively, the rule frozen
    encoding follows) covers the encoder only: adapters and optimiser stay fp32, the head sees fp32."""
    windows = [w for i in idx for w in windows_per_text[i]]
    owner = np.repeat(np.arange(len(idx)), [len(windows_per_text[i]) for i in idx])
    ids, attn = text_encoder.pad(windows, device)
    enabled = text_encoder.uses_bf16(device) if bf16 is None else bf16
    with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=enabled):
        embedded = text_encoder(ids, attn)
    return embedded.float(), torch.from_numpy(owner).to(device)


def windows_per_text(text_encoder, texts: list[str]) -> list[list[list[int]]]:
    """Each text's token windows, tokenised once for every epoch."""
    win = text_encoder.windows(texts)
    out: list[list[list[int]]] = [[] for _ in texts]
    for ids, owner in zip(win.input_ids, win.owner):
        out[owner].append(ids)
    return out


def _finetuning_inputs(text_encoder, texts: dict[str, list[str]], config: Config) -> dict:
    """Training texts tokenised once into windows, and a per-epoch batcher over them (length bucketing)."""
    per_text = windows_per_text(text_encoder, texts["train"])
    lengths = [[len(ids) for ids in windows] for windows in per_text]
    cfg = config.train
    return {**texts, "train_windows": per_text,
            "train_batches": lambda rng: bucketed_batches(lengths, cfg.batch_size, cfg.finetune_tokens_per_batch, rng)}


def _encode_in_loop(text_encoder, texts: list[str], like: Features, device: str) -> Features:
    """`like` with its text windows re-embedded by the encoder as it is now (fine-tuning validation)."""
    from moderation.features import offsets_from_owner

    emb, owner = text_encoder.encode(texts, device=device)
    # Picture text embedded by the encoder before fine-tuning would not match it: left out, as before.
    return dataclasses.replace(like, windows=emb, offsets=offsets_from_owner(owner, len(texts)), ocr_text=None,
                               ocr_windows=None, ocr_offsets=None, ocr_lexical=None)


def prepare_finetuning(text_encoder, config: Config):
    """Make the text encoder trainable: all weights, or LoRA adapters through peft."""
    if config.text_encoder.finetune == "lora":
        from peft import LoraConfig, get_peft_model

        text_encoder.model = get_peft_model(text_encoder.model, LoraConfig(r=config.text_encoder.lora_r,
                                                                           lora_alpha=2 * config.text_encoder.lora_r))
    for p in text_encoder.model.parameters():
        p.requires_grad_(config.text_encoder.finetune == "full" or p.requires_grad)


def adaptation_config(config: Config) -> Config:
    """The config of the adaptation stage (`text_encoder.adapt`): LoRA fine-tuning with one head on the training
    sets, each capped at `rows_per_source` rows, on text alone (no pictures, no lexical view). Evaluation-only
    sets are left out: the adapters never see the posts a run is measured on."""
    adapt = config.text_encoder.adapt
    tree = config.model_dump(mode="json")
    tree["datasets"] = {name: {**ds, "max_samples": min(ds["max_samples"] or adapt.rows_per_source,
                                                        adapt.rows_per_source)}
                        for name, ds in tree["datasets"].items() if ds["use"] != "eval_only"}
    tree["text_encoder"].update(adapt=None, finetune="lora")
    tree["image_encoder"].update(kind="none", ocr=False)
    tree["head"].update(members=1, fusion="text_only", image_branch="trained")
    tree["lexical"]["weight"] = 0.0
    tree["train"].update(epochs=adapt.epochs, batch_size=adapt.batch_size, encoder_lr=adapt.lr)
    return config_from_dict(tree, source="the adaptation stage of text_encoder.adapt")


def adapt_text_encoder(config: Config, compute_metrics: MetricFn, adapter_dir: Path, progress: bool = True,
                       log_path: Path | None = None):
    """Train LoRA adapters (`adaptation_config`) and save them to `adapter_dir`, where `build_encoders` merges them
    into the text encoder the rest of the run uses frozen."""
    started = time.perf_counter()
    log.info("adapting the text encoder: LoRA on at most %d rows per training set",
             config.text_encoder.adapt.rows_per_source)
    stage = train(adaptation_config(config), compute_metrics, progress, log_path)
    if set(stage.zero_shot_classes) >= set(config.category_names):
        raise ValueError(f"text_encoder.adapt: no class has {config.zero_shot.min_train_positives} positives in the "
                         f"capped sample, so there is nothing to adapt the encoder to; raise rows_per_source")
    stage.text_encoder.model.save_pretrained(adapter_dir)  # peft writes the adapter alone, never the base weights
    log.info("text encoder adapted in %.0f s; adapter saved to %s", time.perf_counter() - started, adapter_dir)


def train(config: Config, compute_metrics: MetricFn, progress: bool = True, log_path: Path | None = None,
          text_encoder_dir: Path | None = None) -> TrainResult:
    """The whole training run, up to a fitted model and its features (evaluation happens elsewhere).

    `text_encoder_dir`: where the run keeps its text encoder's files; `text_encoder.adapt` saves its adapter there
    (and needs it). Fine-tuned encoders are saved by the caller from the result instead.
    """
    from moderation.data.build import build_splits

    device = pick_device(config.train.device)
    torch.manual_seed(config.train.seed)  # the head's initial weights too: a rerun gives the same model
    clock = time.perf_counter()
    splits = build_splits(config)
    if config.train.evasion_augment:
        splits["train"] = with_evasion_copies(splits["train"], config.train.evasion_augment,
                                              config.train.evasion_augment_kind, config.train.seed)
    log.info("rows: %s", {k: len(v) for k, v in splits.items()})
    seconds = {"data": time.perf_counter() - clock}
    clock = time.perf_counter()
    adapter_dir = None
    if config.text_encoder.adapt is not None and reads_text(config):
        if text_encoder_dir is None:
            raise ValueError("text_encoder.adapt: training needs a folder for the adapter (text_encoder_dir)")
        adapter_dir = Path(text_encoder_dir)
        adapt_text_encoder(config, compute_metrics, adapter_dir, progress, log_path)
        seconds["adapt"] = time.perf_counter() - clock
        clock = time.perf_counter()
    text_encoder, image_encoder = build_encoders(config, adapter_dir)
    features = split_features(config, splits, text_encoder, image_encoder, progress)
    seconds["encode"] = time.perf_counter() - clock
    clock = time.perf_counter()
    keep = downsample_negatives(features["train"].labels, features["train"].label_mask,
                                config.sampling.negative_rate, config.train.seed)
    zero_shot, zs_methods = zero_shot_setup(config, text_encoder, features)
    names = config.category_names
    trainable = np.array([c not in zs_methods for c in names])
    lexical = None
    if config.lexical.weight and text_encoder is not None:
        lexical, features = fit_lexical(config, splits, features, keep, trainable)
    train_features = features["train"].subset(keep)
    # Image features are the pixel encoder's, with the mean OCR text embedding appended when OCR is on.
    image_dim = train_features.image.shape[1] if train_features.image is not None else 0
    text_dim = text_encoder.dim if text_encoder is not None and config.head.fusion != "image_only" else 0
    nsfw_class = nsfw_zero_shot_class(config, train_features)
    if nsfw_class is not None:
        zs_methods[f"{names[nsfw_class]} (images)"] = "open_nsfw probability"

    def new_model(seed: int) -> ModerationModel:
        torch.manual_seed(seed)
        model = ModerationModel(names, config.head.fusion, text_dim, image_dim,
                                config.head.hidden_dim, config.head.dropout, zero_shot, config.head.image_branch,
                                config.head.caption_picture_rule)
        model.prior_offset[torch.from_numpy(trainable)] = prior_correction(config.sampling.negative_rate)
        if lexical is not None:  # validation (early stopping) scores the blend the run will deploy
            model.lexical_weight.copy_(torch.from_numpy(lexical.active) * config.lexical.weight)
        has_image = train_features.has_image
        head_sees_images = model.meta["image_dim"] > 0 and train_features.image is not None and has_image.any()
        model.head.set_input_stats(
            torch.from_numpy(train_features.windows) if train_features.windows.shape[0] and text_dim else None,
            torch.from_numpy(train_features.image[has_image]) if head_sees_images else None)
        model.nsfw_class = nsfw_class
        return model

    finetune = config.text_encoder.finetune != "frozen" and text_encoder is not None
    texts = None
    if finetune:
        prepare_finetuning(text_encoder, config)
        train_texts = [t or "" for t in splits["train"]["text"]]
        texts = {"train": [train_texts[i] for i in keep], "validation": [t or "" for t in splits["validation"]["text"]]}
        texts = _finetuning_inputs(text_encoder, texts, config)
    seeds = member_seeds(config.train.seed, config.head.members)
    heads, history = [], []
    for member, seed in enumerate(seeds):
        model = new_model(seed)
        history += fit(model, train_features, features["validation"], config, compute_metrics, trainable, device,
                       progress, log_path, text_encoder if finetune else None, texts,
                       sources=np.asarray(splits["train"]["source"])[keep], seed=seed,
                       member=member if len(seeds) > 1 else None)
        heads.append(model.head)
    model.use_heads(heads)
    if finetune:
        # A LoRA encoder stays unmerged here so the run saves the adapter alone; loading it merges it.
        for split in ("validation", "test"):
            features[split] = _encode_in_loop(text_encoder, [t or "" for t in splits[split]["text"]], features[split], device)
    model.to("cpu")
    seconds["fit"] = time.perf_counter() - clock
    positives = (features["train"].labels * features["train"].label_mask).sum(0)
    return TrainResult(model, text_encoder, image_encoder, splits, features, history, zs_methods,
                       {c: int(p) for c, p in zip(names, positives)}, {k: round(v, 1) for k, v in seconds.items()},
                       lexical)
