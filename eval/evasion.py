"""The evasion benchmark's table: per class PR-AUC (average precision) on clean and perturbed text, and the drop.

The perturbations themselves (`perturb`, `perturb_rows`, kinds leet, homoglyph, zero_width, spaced, mixed)
live in moderation.encoders.perturb, so training can use them for augmentation without importing eval; they are
re-exported here. The benchmark scores the test split twice, as written and after
`perturb_rows(texts, rate=1.0, seed)`, and `evasion_table` compares the two per class (target: a drop of at
most 0.01).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from eval.metrics import per_class_metrics
from moderation.encoders.perturb import EXACT, KINDS, WILD, ZERO_WIDTH, perturb, perturb_rows


def evasion_table(scores_clean, scores_perturbed, labels, mask, categories: Sequence[str]) -> dict[str, dict]:
    """Per category: support, positives, PR-AUC (average precision) clean and perturbed, and the drop.

    Both score arrays are (N, C) for the same rows in the same order. `drop` is clean minus perturbed
    (positive = evasion hurts); `None` where average precision is undefined (no known positive or negative).
    Where the drop comes from: `drop_harmful` is the drop when only the class's positives are scored as
    rewritten (harm words lost: the normaliser's reading misses what evaders hide), `drop_benign` when only its
    negatives are (harm read into benign posts: a reading that puts a harm word in). The two need not add up to
    `drop`, since a ranking mixes both, but say which side a fix has to work on.
    A final "mean" entry averages over the categories where the drop is defined.

    >>> t = evasion_table([[0.9], [0.5], [0.1]], [[0.4], [0.5], [0.1]], [[1], [0], [0]], [[True]] * 3, ["hate"])
    >>> t["hate"]["average_precision_clean"], t["hate"]["average_precision_perturbed"], t["hate"]["drop"]
    (1.0, 0.5, 0.5)
    >>> t["hate"]["drop_harmful"], t["hate"]["drop_benign"]  # the harmful post lost its score; no benign one rose
    (0.5, 0.0)
    """
    scores_clean, scores_perturbed = np.asarray(scores_clean), np.asarray(scores_perturbed)
    if scores_clean.shape != scores_perturbed.shape:
        raise ValueError(f"clean and perturbed scores must share one shape, got {scores_clean.shape} "
                         f"and {scores_perturbed.shape}")
    positive = np.asarray(labels) > 0.5
    clean = per_class_metrics(labels, mask, scores_clean, categories)
    perturbed = per_class_metrics(labels, mask, scores_perturbed, categories)
    # Each side rewritten alone (the other as written); the mask keeps unknown labels out as before.
    harmful_only = per_class_metrics(labels, mask, np.where(positive, scores_perturbed, scores_clean), categories)
    benign_only = per_class_metrics(labels, mask, np.where(positive, scores_clean, scores_perturbed), categories)
    table: dict[str, dict] = {}
    for cat in categories:
        before, after = clean[cat]["average_precision"], perturbed[cat]["average_precision"]
        measurable = before is not None and after is not None
        table[cat] = {
            "support": clean[cat]["support"],
            "positives": clean[cat]["positives"],
            "average_precision_clean": before,
            "average_precision_perturbed": after,
            "drop": before - after if measurable else None,
            "drop_harmful": before - harmful_only[cat]["average_precision"] if measurable else None,
            "drop_benign": before - benign_only[cat]["average_precision"] if measurable else None,
        }
    defined = [row for row in table.values() if row["drop"] is not None]
    table["mean"] = {
        "support": None,
        "positives": None,
        **{key: _mean(r[key] for r in defined) for key in ("average_precision_clean", "average_precision_perturbed",
                                                             "drop", "drop_harmful", "drop_benign")},
    }
    return table


def evasion_benchmark(score_texts: Callable[[list[str]], np.ndarray], texts: Sequence[str], labels, mask,
                      categories: Sequence[str], seed: int = 0, kinds: Sequence[str] = KINDS,
                      word_rate: float = 0.5) -> dict[str, dict[str, dict]]:
    """{kind: evasion_table} for every kind: the texts scored as written and after `perturb_rows(rate=1.0)`.

    `score_texts(texts) -> (N, C) scores` is any scorer, e.g. a Moderator's fused scores. Each kind uses
    the same seed, so kinds differ only by the rewrite.

    >>> score = lambda ts: np.array([[float("badwordx" in t)] for t in ts])
    >>> out = evasion_benchmark(score, ["badwordx", "calm"], [[1], [0]], [[True], [True]], ["hate"], kinds=["spaced"])
    >>> out["spaced"]["hate"]["drop"]
    0.5
    """
    clean = np.asarray(score_texts(list(texts)))
    tables = {}
    for kind in kinds:
        rewritten = perturb_rows(list(texts), rate=1.0, seed=seed, kind=kind, word_rate=word_rate)
        perturbed = np.asarray(score_texts(rewritten))
        tables[kind] = evasion_table(clean, perturbed, labels, mask, categories)
    return tables


# What the kinds are, said once for BENCHMARKS.md and the model card.
KINDS_NOTE = ("Kinds leet, homoglyph, zero_width, spaced, punctuated and mixed (one of those per word) are what the "
              "normaliser is built to read back: a zero drop there with the normaliser on shows it undoes them, not "
              "robustness. masked (b*dword), stretched (baaadword) and wild (one of those two per word) are rewrites it "
              "does not read back exactly (a stretched or masked word is read back when an English word fits it, a masked "
              "one as the harm word that fits first): their drop is what evaders still win; any draws each word's kind "
              "from all seven.")


# The kinds whose per-class tables BENCHMARKS.md and the model card show, with what each stands for.
PER_CLASS_KINDS = {"mixed": "rewrites the normaliser reads back",
                   "masked": "masked words alone, read back only where a word fits",
                   "wild": "rewrites it does not read back exactly"}

SIDES_NOTE = ("In the per-class tables the last two columns rewrite one side only, the other scored as written: a drop "
              "the harmful side carries is harm words the normaliser does not read back; one the benign side carries "
              "is harm read into benign posts.")


def _mean(values) -> float | None:
    values = list(values)
    return float(np.mean(values)) if values else None


def format_evasion_table(table: dict[str, dict]) -> str:
    """The evasion table as Markdown (for BENCHMARKS.md and the model card)."""
    def cell(value, digits=3):
        return "-" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)

    # Tables kept in runs measured before the split by side existed have no drop_harmful / drop_benign.
    sides = all("drop_harmful" in row for row in table.values())
    lines = ["| class | support | positives | PR-AUC clean | PR-AUC perturbed | drop |"
             + (" drop, harmful posts rewritten only | drop, benign posts rewritten only |" if sides else ""),
             "|---|---|---|---|---|---|" + ("---|---|" if sides else "")]
    for cat, row in table.items():
        lines.append(f"| {cat} | {cell(row['support'])} | {cell(row['positives'])} | "
                     f"{cell(row['average_precision_clean'])} | {cell(row['average_precision_perturbed'])} | "
                     f"{cell(row['drop'])} |"
                     + (f" {cell(row['drop_harmful'])} | {cell(row['drop_benign'])} |" if sides else ""))
    return "\n".join(lines)


def format_settings_table(settings: dict[str, dict], deployed: str | None = None) -> str:
    """One row per encoder setting ({setting: {kind: evasion_table}}): mean PR-AUC clean, the mean drop per
    rewrite kind and the worst class under the mixed and the wild rewrites (where measured); the setting the run
    deploys is marked (for BENCHMARKS.md and the model card)."""
    def cell(value):
        return "-" if value is None else f"{value:.3f}"

    kinds = list(next(iter(settings.values())))
    worst_of = [k for k in ("mixed", "wild") if k in kinds]
    lines = ["| encoder setting | mean PR-AUC clean | " + " | ".join(f"drop: {k}" for k in kinds)
             + "".join(f" | worst class drop ({k})" for k in worst_of) + " |",
             "|---|---|" + "---|" * (len(kinds) + len(worst_of))]
    for name, tables in settings.items():
        worst_cells = []
        for kind in worst_of:
            drops = {c: r["drop"] for c, r in tables[kind].items() if c != "mean" and r["drop"] is not None}
            worst = max(drops, key=drops.get) if drops else None
            worst_cells.append(f"{worst} {drops[worst]:.3f}" if worst else "-")
        lines.append(f"| {name}{' (deployed)' if name == deployed else ''} | "
                     f"{cell(tables[kinds[0]]['mean']['average_precision_clean'])} | "  # clean: the same for every kind
                     + " | ".join([cell(tables[k]["mean"]["drop"]) for k in kinds] + worst_cells) + " |")
    return "\n".join(lines)


__all__ = ["EXACT", "KINDS", "KINDS_NOTE", "PER_CLASS_KINDS", "SIDES_NOTE", "WILD", "ZERO_WIDTH", "evasion_benchmark",
           "evasion_table", "format_evasion_table", "format_settings_table", "perturb", "perturb_rows"]
