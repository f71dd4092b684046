"""Evasion perturbations: seeded rewrites of words the way evaders write them.

`perturb(text, kind, rng)` rewrites some words of one text:

- `leet`: inner letters become look-alike digits and symbols ("badword" -> "b4dw0rd");
- `homoglyph`: some letters become Cyrillic/Greek look-alikes, at least one Latin letter stays per word;
- `zero_width`: zero-width characters go between letters ("bad\\u200bword");
- `spaced`: a word is spelled out with spaces ("b a d w o r d");
- `punctuated`: the letters are joined by a dot, hyphen or underscore ("badword" -> "b.a.d.w.o.r.d");
- `mixed`: each chosen word gets one of the five, at random;

and two the normaliser does not read back exactly (`WILD`), the way evaders also write, to measure what it
leaves (a stretched or masked word is read back when an English word fits it, "stuuupid", "st*pid"; the fit
it chooses is not always the word that was masked):

- `masked`: one or two inner letters, vowels first, become a symbol ("badword" -> "b*dword", "b#dw*rd");
- `stretched`: one letter is repeated two to four more times ("badword" -> "baaadword");
- `wild`: each chosen word gets one of these two, at random.

Words are picked at random (`word_rate` of the eligible ones, at least one), since neither augmentation
nor the benchmark knows which word carries the harm. Each kind only writes what
`moderation.encoders.normalize.normalize_text` undoes (tests/test_evasion.py checks the round trip): leet
rewrites inner lower-case letters and keeps a word the normaliser would read as a code ("C3PO", hex) as it
is, spaced never touches a word next to a single letter or another spaced word, nor one it would misread
("I n d i a n", chat-speak-like "r u i n"). So on a model with `text_encoder.normalize` the evasion drop
measures what normalisation leaves, and on one without it, what the rewrites cost.

Only the first five (`MIRRORED`) and mixed (together `EXACT`) are built to read back exactly; a zero drop on the wild kinds
would be robustness, not construction. `any` draws each word's kind from all seven.

`perturb_rows(texts, rate, seed)` perturbs a seeded share of rows: a small rate is training augmentation
(`train.evasion_augment`), 1.0 the evasion benchmark (eval.evasion, which also builds the clean-vs-perturbed
PR-AUC table). It lives
beside the normaliser it mirrors (the encoders layer), where training may import it and eval too; training
may not import eval.
"""

from __future__ import annotations

import logging
import random
import re
import unicodedata
from collections.abc import Sequence
from functools import lru_cache

from moderation.encoders.normalize import LEET, confusable_table, fold_leet, rejoin_spaced

log = logging.getLogger(__name__)

# Rewrites the normaliser reads back exactly ("mixed" draws one of them per word).
MIRRORED = ("leet", "homoglyph", "zero_width", "spaced", "punctuated")
# Rewrites it does not read back exactly ("wild" draws one of them per word).
WILD = ("masked", "stretched")
KINDS = (*MIRRORED, "mixed", *WILD, "wild", "any")
EXACT = (*MIRRORED, "mixed")  # the kinds `normalize_text` reads back exactly
_DRAW = {"mixed": MIRRORED, "wild": WILD, "any": MIRRORED + WILD}
MASKS = ("*", "*", "#", "%")  # "*" is by far the most common mask
PUNCTUATION = (".", "-", "_")
VOWELS = frozenset("aeiouAEIOU")
ZERO_WIDTH = ("\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad")

# {letter: leet characters the normaliser folds back to it}; "!" is left out, it reads as punctuation.
_LEET_FOR = {letter: [c for c, v in LEET.items() if v == letter and c != "!"] for letter in set(LEET.values())}


@lru_cache(maxsize=1)
def _homoglyphs() -> dict[str, list[str]]:
    """{ASCII letter: Cyrillic/Greek letters that fold back to it}, basic letters only (no notation symbols)."""
    out: dict[str, list[str]] = {}
    for char, letter in sorted(confusable_table().items()):
        # Greek and Cyrillic blocks only, and letters NFKC leaves alone (so the fold sees what we wrote).
        if "\u0370" <= char <= "\u052f" and unicodedata.normalize("NFKC", char) == char:
            out.setdefault(letter, []).append(char)
    return out


def _leet(word: str, rng: random.Random) -> str:
    # Inner lower-case letters only: a digit has no case, so "mac0S" would read back as "macoS".
    inner = [i for i in range(1, len(word) - 1) if word[i] in _LEET_FOR]
    if not inner:
        return word
    chosen = rng.sample(inner, rng.randint(1, len(inner)))
    chars = list(word)
    for i in chosen:
        chars[i] = rng.choice(_LEET_FOR[word[i]])
    out = "".join(chars)
    # "$5" reads as money to the normaliser: write that "s" as "5" too (again if that makes a new "$5").
    while re.search(r"\$\d", out):
        out = re.sub(r"\$(?=\d)", "5", out)
    # What the normaliser reads as a code or identifier ("C3PO", "da7ab45e" as hex) is left as written.
    return out if fold_leet(out) == word else word


def _homoglyph(word: str, rng: random.Random) -> str:
    table = _homoglyphs()
    candidates = [i for i, c in enumerate(word) if table.get(c)]
    if not candidates:
        return word
    # Keep one Latin letter: a word of look-alikes only is folded back only in mostly Latin text.
    most = min(len(candidates), len(word) - 1)
    if most < 1:
        return word
    chars = list(word)
    for i in rng.sample(candidates, rng.randint(1, most)):
        chars[i] = rng.choice(table[word[i]])
    return "".join(chars)


def _zero_width(word: str, rng: random.Random) -> str:
    gaps = list(range(1, len(word)))
    chosen = set(rng.sample(gaps, rng.randint(1, len(gaps))))
    return "".join(c + (rng.choice(ZERO_WIDTH) if i + 1 in chosen else "") for i, c in enumerate(word))


def _spaced(word: str, rng: random.Random) -> str:
    # Words the normaliser cannot read back stay: "I n d i a n" reads as the pronoun and "ndian" (it keeps
    # "I h a t e" apart), "r u i n" as chat-speak.
    out = " ".join(word)
    return out if rejoin_spaced(out) == word else word


def _masked(word: str, rng: random.Random) -> str:
    inner = range(1, len(word) - 1)
    pool = [i for i in inner if word[i] in VOWELS] or list(inner)
    chosen = rng.sample(pool, min(len(pool), 1 if len(word) <= 5 else rng.randint(1, 2)))
    chars = list(word)
    for i in chosen:
        chars[i] = rng.choice(MASKS)
    return "".join(chars)


def _stretched(word: str, rng: random.Random) -> str:
    vowels = [i for i, c in enumerate(word) if c in VOWELS]
    i = rng.choice(vowels or [len(word) - 1])
    return word[:i + 1] + word[i] * rng.randint(2, 4) + word[i + 1:]


def _punctuated(word: str, rng: random.Random) -> str:
    return rng.choice(PUNCTUATION).join(word)


# A token: punctuation, ASCII letters, punctuation ("(badword)," but not "badword1" or "don't").
_TOKEN = re.compile(r"([^\w]*)([A-Za-z]+)([^\w]*)")
_HANDLE = re.compile(r"[@#/:]")  # handles, hashtags and URLs: the normaliser leaves their leet alone
_SINGLE_AT_END = re.compile(r"(?<!\w)[^\W\d_]$")
_SINGLE_AT_START = re.compile(r"^[^\W\d_](?!\w)")


_REWRITE = {"leet": _leet, "homoglyph": _homoglyph, "zero_width": _zero_width, "spaced": _spaced,
            "masked": _masked, "stretched": _stretched, "punctuated": _punctuated}
_MIN_LENGTH = {"leet": 3, "homoglyph": 2, "zero_width": 2, "spaced": 3, "masked": 3, "stretched": 3, "punctuated": 3}


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown evasion kind {kind!r} (known: {', '.join(KINDS)})")


def perturb(text: str, kind: str, rng: random.Random, word_rate: float = 0.5) -> str:
    """Rewrite `word_rate` of the eligible words of `text` (at least one) with evasion `kind`.

    Eligible: whitespace-separated tokens that are ASCII letters with at most punctuation around them
    ("badword," but not "badword1", "@user" or "don't"), long enough for the kind. A word next to a single
    letter is never spaced out, since "a h a t e" could not be read back. Text without eligible words is
    returned as is.

    >>> perturb("please remove this badword now", "leet", random.Random(0), word_rate=1.0)
    'plea$e rem0ve th1s b4dw0rd n0w'
    >>> perturb("please remove this badword now", "spaced", random.Random(1), word_rate=0.2)
    'please r e m o v e this badword now'
    """
    _check_kind(kind)
    if not 0 < word_rate <= 1:
        raise ValueError(f"word_rate must be in (0, 1], got {word_rate!r}")
    pieces = re.split(r"(\s+)", text)  # tokens at even indices, whitespace at odd ones
    words = {i: m for i in range(0, len(pieces), 2)
             if (m := _TOKEN.fullmatch(pieces[i])) and not _HANDLE.search(pieces[i])}
    if not words:
        return text
    # In random order: which of two neighbours gets spelled out (only one may) is left to chance.
    chosen = rng.sample(sorted(words), max(1, round(word_rate * len(words))))
    spaced: set[int] = set()
    for i in chosen:
        prefix, word, suffix = words[i].groups()
        word_kind = rng.choice(_DRAW[kind]) if kind in _DRAW else kind
        if len(word) < _MIN_LENGTH[word_kind] or (word_kind == "spaced" and not _may_space(pieces, i, prefix, spaced)):
            continue
        if word_kind == "spaced":
            spaced.add(i)
        pieces[i] = prefix + _REWRITE[word_kind](word, rng) + suffix
    return "".join(pieces)


def _may_space(pieces: list[str], i: int, prefix: str, spaced: set[int]) -> bool:
    """Whether spelling out token i reads back: no neighbour is spelled out or borders it with a lone letter,
    and no leet symbol sits right before it ("$b i l" reads as a symbol glued to a word)."""
    if prefix[-1:] in ("@", "$", "!"):
        return False
    before = pieces[i - 2] if i >= 2 else ""
    after = pieces[i + 2] if i + 2 < len(pieces) else ""
    if i - 2 in spaced or i + 2 in spaced:
        return False
    return not (_SINGLE_AT_END.search(before) or _SINGLE_AT_START.search(after))


def perturb_rows(texts: Sequence[str | None], rate: float, seed: int, kind: str = "mixed",
                 word_rate: float = 0.5) -> list[str | None]:
    """Perturb a seeded share `rate` of the texts with `kind`; None (no text) stays None.

    The same (texts, rate, seed, kind) always gives the same output. `rate=1.0` perturbs every row (the
    benchmark); a small rate is training augmentation.

    >>> perturb_rows(["a post about cats", None], rate=1.0, seed=0, kind="spaced")
    ['a post about c a t s', None]
    """
    _check_kind(kind)
    if not 0 <= rate <= 1:
        raise ValueError(f"rate must be in [0, 1], got {rate!r}")
    rng = random.Random(seed)
    out = []
    for text in texts:
        hit = rng.random() < rate
        out.append(perturb(text, kind, rng, word_rate) if hit and text else text)
    changed = sum(a != b for a, b in zip(texts, out))
    log.debug("perturbed %d of %d texts (%s, rate %.2f, seed %d)", changed, len(out), kind, rate, seed)
    return out


__all__ = ["EXACT", "KINDS", "MIRRORED", "WILD", "ZERO_WIDTH", "perturb", "perturb_rows"]
