"""The model card: what a run was trained on, how well each class does, what is zero-shot, its limits."""

from __future__ import annotations

from pathlib import Path

from moderation import runfiles
from moderation.config import Config


def _fmt(value) -> str:
    return "–" if value is None else f"{value:.3f}"


def _licence(loader: str) -> str:
    try:
        from moderation.data.sources import LICENSES
    except ImportError:
        return "?"
    return LICENSES.get(loader, "see its SOURCE.md") if loader not in ("jsonl", "hub") else "your own data"


def write_model_card(run_dir: Path, config: Config, version: str, result, report: dict, thresholds: dict,
                     seconds: dict | None = None) -> Path:
    rows = {k: len(v) for k, v in result.splits.items()}
    lines = [
        f"# Model card: {version}",
        "",
        f"- Text encoder: `{config.text_encoder.model}` ({config.text_encoder.finetune}), "
        f"windows of {config.text_encoder.max_length} tokens, up to {config.text_encoder.max_windows} per post",
        f"- Image encoder: `{config.image_encoder.kind}`" + (f" `{config.image_encoder.model}`" if config.image_encoder.model else ""),
        f"- Fusion: `{config.head.fusion}`; loss `{config.loss.kind}` with pos_weight `{config.loss.pos_weight}`; "
        f"negatives kept at rate {config.sampling.negative_rate} (scores corrected back to the true prior)",
        f"- Rows: train {rows.get('train', 0)}, validation {rows.get('validation', 0)}, test {rows.get('test', 0)}",
        *(["- Wall time of `moderation train` (seconds): " + ", ".join(f"{k} {v}" for k, v in seconds.items())
           + " (encode is near zero when the embedding cache is warm)"] if seconds else []),
        "",
        "## Training data",
        "",
        "| dataset | loader | license | use |",
        "|---|---|---|---|",
        *[f"| {name} | {ds.loader} | {_licence(ds.loader)} | {ds.use} |" for name, ds in config.datasets.items()],
        "",
        "## Per-class quality (test split; thresholds chosen on validation)",
        "",
        "| category | scoring | train positives | test support (positives) | PR-AUC (average precision) | ROC-AUC | precision @ block | recall @ review |",
        "|---|---|---|---|---|---|---|---|",
    ]
    test = report["splits"].get("test", {}).get("model", {})
    for name in config.category_names:
        m = test.get(name, {})
        scoring = f"zero-shot ({result.zero_shot_classes[name]})" if name in result.zero_shot_classes else "trained"
        at_block, at_review = m.get("block_precision"), m.get("review_recall")
        lines.append(f"| {name} | {scoring} | {result.train_positives.get(name, 0)} | {m.get('support', 0)} "
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
        "text windows to the class's written description and seed phrases, calibrated on whatever labels exist "
        "(`labels`) or, with none, on the training corpus (`corpus_quantile`: the corpus's 99th-percentile "
        "similarity maps to 0.5). Treat their scores as a screening signal for review, not for blocking.",
        "",
        *([f"- {name}: {method}" for name, method in result.zero_shot_classes.items()] or ["None in this run."]),
        "",
        "## Limits",
        "",
        "- Trained on public research datasets (tweets, Reddit, Gab, Civil Comments, chatbot conversations); "
        "quality on other platforms, languages and styles is unmeasured and likely lower.",
        "- Labels of some sets are known to carry annotator and dialect bias (e.g. Davidson et al.); audit "
        "false positives on identity mentions before blocking automatically.",
        "- English only. Images are scored only when the config has an image encoder.",
        "",
        "Full report: `report/report.md`.",
    ]
    path = Path(run_dir) / runfiles.MODEL_CARD
    path.write_text("\n".join(lines) + "\n")
    return path
