"""Identity mentions and the false-positive rate on benign posts that mention identity groups.

Owns the identity-term lexicon and the comparison an audit makes with it. A classic failure of toxicity
models is to flag harmless posts just because they name a group ("as a muslim woman, I ..."); this module
measures it: among posts whose label for a class is 0, the share flagged at the block and at the review
threshold, for posts that mention an identity term versus posts that mention none, with bootstrap intervals
and the ratio of the two rates.

The lexicon is deliberately small and neutral: group nouns and adjectives people use to describe themselves
(never slurs). Matching is whole-word and case-insensitive, so it is crude: "black" in "a black cat" counts
as a mention, and a post can be about a group without naming it. Read the result as a screening signal;
a ratio well above 1 is worth a look at real examples, a ratio near 1 does not prove fairness.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from .intervals import CONFIDENCE, bootstrap_at_threshold, rate_ratio_interval

IDENTITY_TERMS: dict[str, tuple[str, ...]] = {
    "religion": ("muslim", "muslims", "islam", "islamic", "jewish", "judaism", "christian", "christians",
                 "christianity", "catholic", "catholics", "hindu", "hindus", "buddhist", "buddhists", "sikh", "sikhs",
                 "atheist", "atheists"),
    "race_ethnicity": ("black", "white", "asian", "asians", "african", "africans", "latino", "latina", "latinos",
                       "latinas", "latinx", "hispanic", "hispanics", "mexican", "mexicans", "chinese", "arab", "arabs",
                       "indigenous", "native american", "native americans"),
    "sexual_orientation_gender_identity": ("gay", "gays", "lesbian", "lesbians", "bisexual", "bisexuals", "lgbt",
                                           "lgbtq", "queer", "trans", "transgender", "nonbinary", "non-binary"),
    "gender": ("women", "woman", "girls", "female", "females"),
    "national_origin": ("immigrant", "immigrants", "migrant", "migrants", "refugee", "refugees", "foreigners"),
    "disability": ("disabled", "disability", "disabilities", "blind", "deaf", "autistic", "wheelchair user",
                   "wheelchair users"),
}


def _pattern(terms: Iterable[str]) -> re.Pattern:
    # Longest first, so "native americans" wins over a shorter alternative; (?<!\w)/(?!\w) keep whole words.
    alternatives = "|".join(re.escape(t) for t in sorted(terms, key=len, reverse=True))
    return re.compile(rf"(?<![\w-])(?:{alternatives})(?![\w-])", re.IGNORECASE)


_PATTERNS = {group: _pattern(terms) for group, terms in IDENTITY_TERMS.items()}


def identity_groups(text: str | None) -> list[str]:
    """The lexicon groups whose terms `text` mentions (whole words, any case), in lexicon order.

    >>> identity_groups("Proud to be a Muslim woman"), identity_groups("whitespace, blacklist"), identity_groups(None)
    (['religion', 'gender'], [], [])
    """
    if not text:
        return []
    return [group for group, pattern in _PATTERNS.items() if pattern.search(text)]


def _benign(label_mask: np.ndarray, labels: np.ndarray, c: int) -> np.ndarray:
    return label_mask[:, c] & (labels[:, c] == 0.0)


def _compare(score: np.ndarray, mention: np.ndarray, threshold: float, rng, n_bootstrap: int,
             confidence: float) -> dict:
    """FPR among benign posts with and without a mention, and their ratio (mention / other)."""
    zeros = np.zeros
    out = {}
    for name, keep in (("mention", mention), ("other", ~mention)):
        at = bootstrap_at_threshold(zeros(int(keep.sum())), score[keep], threshold, rng, n_bootstrap, confidence)
        out[name] = {"benign": int(keep.sum()), "flagged": at["fp"], "false_positive_rate": at["false_positive_rate"]}
    a, b = out["mention"], out["other"]
    out["ratio"] = rate_ratio_interval(a["flagged"], a["benign"], b["flagged"], b["benign"], rng, n_bootstrap,
                                       confidence)
    return out


def identity_false_positive_rates(
    labels: np.ndarray,
    label_mask: np.ndarray,
    scores: np.ndarray,
    texts: Sequence[str | None],
    categories: Sequence[str],
    thresholds: Mapping[str, Mapping],
    rng: np.random.Generator,
    n_bootstrap: int = 1000,
    confidence: float = CONFIDENCE,
) -> dict:
    """Per class and threshold kind, the FPR on benign posts mentioning any identity term vs none.

    Returns {"groups_mentioned": {group: posts}, "classes": {category: {"block"|"review": {"mention": {...},
    "other": {...}, "ratio": interval | None, "by_group": {group: {...}}}}}}. "other" is always posts that
    mention no identity term at all, also for the per-group rows, so every row has the same baseline.
    """
    if len(texts) != len(labels):
        raise ValueError(f"got {len(texts)} texts for {len(labels)} label rows")
    groups = [identity_groups(t) for t in texts]
    mentions_any = np.array([bool(g) for g in groups])
    per_group = {g: np.array([g in gs for gs in groups]) for g in IDENTITY_TERMS}
    out = {"groups_mentioned": {g: int(m.sum()) for g, m in per_group.items()}, "classes": {}}
    for c, cat in enumerate(categories):
        benign = _benign(label_mask, labels, c)
        if not benign.any():
            continue
        score = scores[benign, c]
        row = {}
        for kind in ("block", "review"):
            t = float(thresholds[cat][kind])
            entry = _compare(score, mentions_any[benign], t, rng, n_bootstrap, confidence)
            entry["by_group"] = {}
            for g, mention in per_group.items():
                # Baseline: benign posts with no identity mention at all (not "not this group").
                keep = mention[benign] | ~mentions_any[benign]
                if mention[benign].any():
                    entry["by_group"][g] = _compare(score[keep], mention[benign][keep], t, rng, n_bootstrap,
                                                    confidence)
            row[kind] = entry
        out["classes"][cat] = row
    return out
