"""The model card: what a run was trained on, how well each class does, what is zero-shot, which classes
never block (and why), its limits. Written from the run directory's files only (config, model.json, the
report, the thresholds), so it can be rewritten for any run."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from moderation import runfiles
from moderation.config import Config
from moderation.policy import Thresholds


def _text_preparation(text_encoder) -> str:
    """What the encoders read of a post's text (`moderation.encoders.prepare`), in words."""
    steps = []
    if text_encoder.platform_markup == "strip":
        steps.append("platform markup taken out (@mentions, retweet markers, links)")
    if text_encoder.normalize:
        steps.append("evasion rewrites undone (the normaliser)")
    return "text read with " + " and ".join(steps) if steps else "text read as written"


def _fmt(value) -> str:
    return "–" if value is None else f"{value:.3f}"


def _licence(ds) -> str:
    from moderation.data.build import dataset_license
    from moderation.data.sources import OWN_DATA

    license_id = dataset_license(ds)
    return {None: "not stated", OWN_DATA: "your own data"}.get(license_id, license_id)


def _encoder_training(cfg) -> str:
    if cfg.adapt is None:
        return cfg.finetune
    a = cfg.adapt
    return (f"LoRA-adapted (r={cfg.lora_r}) on at most {a.rows_per_source} rows per training set, {a.epochs} epochs, "
            f"then frozen")


def write_model_card(run_dir: Path, config: Config, meta: Mapping, report: Mapping, thresholds: Thresholds,
                     cross_source: Mapping | None = None, evasion: Mapping | None = None,
                     harmless: Mapping | None = None) -> Path:
    """`meta` is the run's model.json (version, zero_shot, train_positives, rows, train_seconds); `report` holds
    {"splits": {split: {model name: per_class_metrics}}}; `cross_source` is the summary of `moderation bench
    cross-source` for this recipe when the thresholds were chosen on it; `evasion` is what `moderation bench
    evasion` measured on this model, `harmless` what `moderation bench harmless` did."""
    version, rows, seconds = meta.get("version", Path(run_dir).name), meta.get("rows", {}), meta.get("train_seconds")
    zero_shot, train_positives = meta.get("zero_shot", {}), meta.get("train_positives", {})
    lines = [
        f"# Model card: {version}",
        "",
        f"- Text encoder: `{config.text_encoder.model}` ({_encoder_training(config.text_encoder)}, "
        f"`{config.text_encoder.pooling}` pooling), "
        f"windows of {config.text_encoder.max_length} tokens, up to {config.text_encoder.max_windows} per post; "
        f"{_text_preparation(config.text_encoder)}",
        f"- Image encoder: `{config.image_encoder.kind}`" + (f" `{config.image_encoder.model}`" if config.image_encoder.model else ""),
        f"- Fusion: `{config.head.fusion}`"
        + (f", the mean of {config.head.members} heads trained apart from different seeds" if config.head.members > 1
           else "")
        + f"; loss `{config.loss.kind}` "
        + (f"with pos_weight `{config.loss.pos_weight}`; " if config.loss.balance == "pooled" else
           f"balanced per source (each source and, within it, positives and negatives weigh the same; row weight "
           f"at most {config.loss.max_row_weight:g}); ")
        + f"negatives kept at rate {config.sampling.negative_rate} (scores corrected back to the true prior)",
        *([f"- Lexical view: TF-IDF over hashed word 1-2 and char 2-5 grams ({config.lexical.word_features} + "
           f"{config.lexical.char_features} most frequent buckets), one regression per trained class; each text "
           f"logit is {1 - config.lexical.weight:g} x the head's + {config.lexical.weight:g} x the lexical view's "
           f"(captions and picture text alike; zero-shot classes use neither)"] if meta.get("lexical") else []),
        f"- Rows: train {rows.get('train', 0)}, validation {rows.get('validation', 0)}, test {rows.get('test', 0)}",
        *(["- Wall time of training (seconds, before evaluation): " + ", ".join(f"{k} {v}" for k, v in seconds.items())
           + " (encode is near zero when the embedding cache is warm)"] if seconds else []),
        "",
        "## Training data",
        "",
        "| dataset | loader | license | use |",
        "|---|---|---|---|",
        *[f"| {name} | {ds.loader} | {_licence(ds)} | {ds.use} |" for name, ds in config.datasets.items()],
        "",
        "## Per-class quality (test split; "
        + ("block thresholds chosen on held-out sources, see below; review on validation)" if cross_source
           else "thresholds chosen on validation)"),
        "",
        "| category | scoring | blocks | train positives | test support (positives) | PR-AUC (average precision) | ROC-AUC | precision @ block | recall @ review |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    test = report["splits"].get("test", {}).get("model", {})
    for name in config.category_names:
        m = test.get(name, {})
        scoring = f"zero-shot ({zero_shot[name]})" if name in zero_shot else "trained"
        at_block, at_review = m.get("block_precision"), m.get("review_recall")
        blocks = "yes" if name in thresholds.categories and thresholds[name].may_block else "no (review at most)"
        lines.append(f"| {name} | {scoring} | {blocks} | {train_positives.get(name, 0)} | {m.get('support', 0)} "
                     f"({m.get('positives', 0)}) | {_fmt(m.get('average_precision'))} | {_fmt(m.get('roc_auc'))} | "
                     f"{_fmt(at_block)} | {_fmt(at_review)} |")
    lines += [
        "",
        "A dash means the test split has no known labels of both kinds for that class: it is scored, but its "
        "quality here is unmeasured.",
        "",
        "## Zero-shot classes",
        "",
        "Classes with fewer than "
        f"{config.zero_shot.min_train_positives} training positives are scored by the similarity of the post's "
        "text windows to the class's written description and seed phrases (less "
        f"{config.zero_shot.contrast_weight:g} times their similarity to its benign twins, where it has some), "
        "calibrated on whatever labels exist "
        "(`labels`) or, with none, on the training corpus (`corpus_quantile`: the corpus's 99th-percentile "
        "similarity maps to 0.5). Their scores are a screening signal: the policy never lets them block, only "
        "send to review.",
        "",
        *([f"- {name}: {method}{_twins(config, name)}" for name, method in zero_shot.items()]
          or ["None in this run."]),
        "",
        *_never_block(thresholds),
        *_cross_source(cross_source, config.category_names),
        *_review_band(cross_source, config.thresholds.review_recall,
                      (Path(run_dir) / runfiles.CROSS_SOURCE / runfiles.REVIEW_TRADEOFF_PLOT).is_file()),
        *_evasion(evasion),
        *_harmless(harmless),
        *_release_notes(run_dir),
        *_pictures(config),
        "## Limits",
        "",
        "- Trained on public research datasets (tweets, Reddit, Gab, Civil Comments, chatbot conversations); "
        "quality on other platforms, languages and styles is unmeasured and likely lower.",
        "- Labels of some sets are known to carry annotator and dialect bias (e.g. Davidson et al.); audit "
        "false positives on identity mentions before blocking automatically.",
        "- English only. Images are scored only when the config has an image encoder or reads text in pictures.",
        "",
        "Full report: `report/report.md`.",
    ]
    path = Path(run_dir) / runfiles.MODEL_CARD
    path.write_text("\n".join(lines) + "\n")
    return path


def _pictures(config: Config) -> list[str]:
    """How the model scores pictures, in words (the card's reader cannot see the config's comments)."""
    image, head = config.image_encoder, config.head
    if image.kind == "none" and not image.ocr:
        return []
    lines = ["## Pictures", ""]
    if head.image_branch == "text_head":
        lines.append("No image training data: a picture is scored by the trained text head on the text read from "
                     "it (OCR)" if image.ocr else "No image training data: the text head does not see pictures")
        if config.zero_shot.nsfw_category and image.kind == "opennsfw":
            lines[-1] += f", and `{config.zero_shot.nsfw_category}` also by the open_nsfw probability"
        lines[-1] += (f". Caption and picture evidence combine per class by `{head.caption_picture_rule}`; a picture "
                      "with no readable text is no evidence (except for open_nsfw). The meme sets that measure this "
                      "are evaluation only: `moderation bench pictures` (BENCHMARKS.md).")
    else:
        lines.append(f"The image branch is trained on the image rows of the training data ({image.kind} features"
                     + (", with the embedding of the text read from each picture beside them" if image.ocr else "")
                     + ").")
    return [*lines, ""]


def _twins(config, name: str) -> str:
    """How many seed phrases and benign twins a zero-shot class compares with (none for the nsfw image score)."""
    category = next((c for c in config.categories if c.name == name), None)
    if category is None:
        return ""
    seeds, twins = len(category.seed_phrases), len(category.contrast_phrases)
    text = f"; {seeds} seed phrase{'s' * (seeds != 1)}"
    return text + (f", {twins} benign twin{'s' * (twins != 1)}" if twins else "")


def _never_block(thresholds: Thresholds) -> list[str]:
    never = thresholds.never_block()
    return [
        "## Classes that never block",
        "",
        "A class blocks only when it is trained (not zero-shot) and its block threshold reached the block "
        f"precision target ({_fmt(thresholds.targets.get('block_precision'))}) on the data its thresholds were "
        "chosen on. Any other "
        "class sends a post to human review at most, whatever its score."
        + (f" Block thresholds are also high enough that on every source they were chosen on, at most "
           f"{100 * thresholds.targets['max_false_block_rate']:g}% of a class's known negatives would be blocked."
           if thresholds.targets.get("max_false_block_rate") else "")
        + (f" A class blocks only when that bound was checked on at least {thresholds.targets['min_block_sources']:g} "
           "sources with enough known negatives (200 each): one source's posts say little about the next platform's."
           if thresholds.targets.get("min_block_sources") else ""),
        "",
        *([f"- {name}: {why}" for name, why in never.items()] or ["None: every class may block."]),
        "",
    ]


def _pct(value) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def _mean(entry: Mapping | None):
    """The mean of a cross-source summary entry ({"mean": ..., "worst": ...}), None when absent."""
    return None if not entry else entry.get("mean")


def _review_band(summary: Mapping | None, review_recall: float, picture: bool) -> list[str]:
    """What other review recall targets would give on unseen sources: the workload the review band costs."""
    points = (summary or {}).get("summary", {}).get("review_targets")
    if not points:
        return []
    lines = ["## Choosing the review band", "",
             f"Review thresholds are chosen on validation at recall {_fmt(review_recall)} "
             "(`thresholds.review_recall`). What other targets would have given on the held-out sources above "
             "(review thresholds chosen at the target on each fold's validation split, block thresholds as "
             "deployed; mean over sources):", "",
             "| review recall target | benign flagged | harmful caught | benign blocked |", "|---|---|---|---|"]
    for target, r in points.items():
        deployed = " (deployed)" if float(target) == review_recall else ""
        lines.append(f"| {target}{deployed} | {_pct(r['benign_flagged'])} | {_pct(r['harmful_caught'])} | "
                     f"{_pct(r['benign_blocked'])} |")
    if picture:
        lines += ["", f"![benign flagged against harmful caught per review target]"
                      f"({runfiles.CROSS_SOURCE}/{runfiles.REVIEW_TRADEOFF_PLOT})"]
    return [*lines, ""]


def _cross_source(summary: Mapping | None, names: list[str]) -> list[str]:
    """Quality and decisions on sources the recipe never trained on (leave-one-source-out)."""
    if not summary:
        return []
    sources = summary["sources"]
    lines = [
        "## On sources it never trained on (cross-source)",
        "",
        f"`moderation bench cross-source` ({summary.get('label', '?')}): each training source in turn was held out "
        "entirely, the same recipe trained on the others, and the held-out source was scored. This model's "
        "block thresholds were chosen on all those held-out predictions together (review thresholds on "
        "validation). The decision rates below are honest estimates: for each source they use block thresholds "
        "chosen on the other sources' held-out predictions only. "
        "Benign = known labels, none positive; harmful = a known positive label.",
        "",
        "| held-out source | rows | mean PR-AUC | any-harm PR-AUC | benign flagged (review or block) | "
        "benign blocked | harmful caught |",
        "|---|---|---|---|---|---|---|",
    ]
    for src, r in sources.items():
        rates = r.get("cross_source_thresholds", {})
        lines.append(f"| {src} | {r['rows']} | {_fmt(r['mean_average_precision'])} | "
                     f"{_fmt(r['any_harm_average_precision'])} | {_pct(rates.get('benign_flagged'))} | "
                     f"{_pct(rates.get('benign_blocked'))} | {_pct(rates.get('harmful_caught'))} |")
    s = summary["summary"]
    rates = s.get("cross_source_thresholds", {})
    lines += [f"| **mean over sources** | | {_fmt(_mean(s['mean_average_precision']))} | "
              f"{_fmt(_mean(s['any_harm_average_precision']))} | {_pct(_mean(rates.get('benign_flagged')))} | "
              f"{_pct(_mean(rates.get('benign_blocked')))} | {_pct(_mean(rates.get('harmful_caught')))} |", ""]
    lines += ["Per class PR-AUC on each held-out source (support, positives):", "",
              "| held-out source | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for src, r in sources.items():
        cells = []
        for c in names:
            m = r["per_class"].get(c, {})
            cells.append("–" if m.get("average_precision") is None else
                         f"{m['average_precision']:.3f} ({m['support']}, {m['positives']})")
        lines.append(f"| {src} | " + " | ".join(cells) + " |")
    from eval.benchmarks.cross_source import benign_flags_table

    lines += ["", *benign_flags_table(summary, names)]
    probe = _mean(s.get("probe_flagged"))
    if probe is not None:
        lines += ["", f"Harmless probe (benign texts that use harm words, generated by "
                      f"`moderation.data.hard_negatives`, split `probe`): {_pct(probe)} flagged on average by the "
                      "fold models at their own thresholds."]
    written = _mean(s.get("harmless_posts_flagged"))
    if written is not None:
        lines += ["", f"Harmless posts written by hand (`eval/benchmarks/harmless_posts.json`): {_pct(written)} "
                      "flagged on average by the fold models at their own thresholds."]
    if summary.get("reference"):
        lines += ["", *_compared(summary, summary["reference"], names)]
    return [*lines, ""]


def _compared(ours: Mapping, theirs: Mapping, names: list[str]) -> list[str]:
    """This recipe against another one (`moderation evaluate --compare-to`), on the held-out sources both
    measured: per class the mean PR-AUC over those sources, and the headline decision rates."""

    def diff(a, b, pct=False):
        if a is None or b is None:
            return "–"
        return f"{100 * (a - b):+.1f} points" if pct else f"{a - b:+.3f}"

    label = theirs.get("label", "reference")
    both = [src for src in ours["sources"] if src in theirs["sources"]]
    lines = [f"### Against `{label}`", "",
             f"The same benchmark for recipe `{label}` (config `{theirs.get('config', '?')}`, overrides: "
             f"{', '.join(theirs.get('overrides', [])) or 'none'}), "
             f"on the {len(both)} held-out sources both measured. Per class: mean over the sources where the class "
             "has labels.", "",
             f"| category | sources | PR-AUC, this model's recipe | PR-AUC, {label} | change |", "|---|---|---|---|---|"]
    worse = []
    for c in names:
        pairs = [(ours["sources"][src]["per_class"][c]["average_precision"],
                  theirs["sources"][src]["per_class"][c]["average_precision"]) for src in both]
        pairs = [(a, b) for a, b in pairs if a is not None and b is not None]
        if not pairs:
            continue
        a, b = sum(p[0] for p in pairs) / len(pairs), sum(p[1] for p in pairs) / len(pairs)
        if round(a - b, 3) < 0:  # a change that does not show at three decimals is no change
            worse.append(f"{c} ({a - b:+.3f})")
        lines.append(f"| {c} | {len(pairs)} | {_fmt(a)} | {_fmt(b)} | {diff(a, b)} |")
    o, t = ours["summary"], theirs["summary"]
    ox, tx = o.get("cross_source_thresholds", {}), t.get("cross_source_thresholds", {})
    lines += ["", f"| mean over sources | this model's recipe | {label} | change |", "|---|---|---|---|"]
    for name, a, b, pct in [
            ("mean PR-AUC", _mean(o["mean_average_precision"]), _mean(t["mean_average_precision"]), False),
            ("any-harm PR-AUC", _mean(o["any_harm_average_precision"]), _mean(t["any_harm_average_precision"]), False),
            ("benign flagged", _mean(ox.get("benign_flagged")), _mean(tx.get("benign_flagged")), True),
            ("benign blocked", _mean(ox.get("benign_blocked")), _mean(tx.get("benign_blocked")), True),
            ("harmful caught", _mean(ox.get("harmful_caught")), _mean(tx.get("harmful_caught")), True),
            ("harmless probe flagged", _mean(o.get("probe_flagged")), _mean(t.get("probe_flagged")), True),
            ("hand-written harmless flagged", _mean(o.get("harmless_posts_flagged")),
             _mean(t.get("harmless_posts_flagged")), True)]:
        if a is None and b is None:  # a figure neither summary has (measured before it existed)
            continue
        show = _pct if pct else _fmt
        lines.append(f"| {name} | {show(a)} | {show(b)} | {diff(a, b, pct)} |")
    lines += ["", "Classes whose PR-AUC on unseen sources did not improve: " + (", ".join(worse) or "none") + "."]
    return lines


def _release_notes(run_dir: Path) -> list[str]:
    """The run's `RELEASE_NOTES.md`, if the people who released it wrote one (e.g. why a class did not improve:
    a judgement no benchmark computes)."""
    path = Path(run_dir) / runfiles.RELEASE_NOTES
    if not path.is_file():
        return []
    return ["## Release notes", "", f"Written by the people who released this model (`{runfiles.RELEASE_NOTES}` in "
            "the run directory), not generated:", "", path.read_text().strip(), ""]


def _harmless(measured: Mapping | None) -> list[str]:
    """False flags on harmless posts that use harm words (`moderation bench harmless`)."""
    if not measured:
        return []
    from eval.benchmarks.harmless import format_parts

    return ["## Harmless posts with harm words", "",
            "`moderation bench harmless`: harmless posts scored at the deployed thresholds, so every post flagged "
            "(sent to review or blocked) is a false flag. Hand-written posts (`eval/benchmarks/harmless_posts.json`, "
            "never trained on) and the generated probe; the part written after the hard negatives' templates is the "
            "fair estimate for posts of these kinds.", "", format_parts([measured]), ""]


def _evasion(measured: Mapping | None) -> list[str]:
    """PR-AUC lost when words are rewritten the way evaders write them (`moderation bench evasion`)."""
    if not measured:
        return []
    from eval.evasion import KINDS_NOTE, PER_CLASS_KINDS, SIDES_NOTE, format_evasion_table, format_settings_table

    lines = ["## Evasion (rewritten words)", "",
             f"`moderation bench evasion`: {measured['rows']} test posts, every post rewritten (half its words) by each "
             f"kind; drop = PR-AUC clean minus rewritten, mean over classes. {KINDS_NOTE} {SIDES_NOTE}", "",
             format_settings_table(measured["settings"], measured.get("deployed"))]
    deployed = measured["settings"].get(measured.get("deployed")) or {}
    for kind in PER_CLASS_KINDS:
        if kind in deployed:
            lines += ["", f"Per class, {kind} rewrites, as deployed:", "", format_evasion_table(deployed[kind])]
    return [*lines, ""]
