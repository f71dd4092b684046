"""Masked words ("st*pid", "id**t", "id***"): read back with a lexicon learnt from training data, kept hashed.

A reader fills a masked letter with the word the writer means, and evaders mask the words a word list would
catch. So, for a word with mask symbols (`* # %`; `@ $ !` are leet, folded before this step):

1. every English word that fits the pattern (`wordsegment`'s vocabulary: same length, the visible letters in
   place) is a candidate, and so is the spelling without its symbols, where they were put between the letters
   of a word instead of over them ("l*oser");
2. if a candidate is in the *harm lexicon*, the one with the highest lexicon score is read, unless an ordinary
   word that fits is over `HARM_WORD_ODDS` times as common and step 3 would read it ("th*t" is "that", not
   a rare insult that fits it). The insults evaders mask have ordinary rivals a few times as common at most
   ("hill" for "h*ll", "laser" for "l*ser") and are still read as the insult: of the shipped lexicon's words
   with one inner letter masked (664 spellings), three read otherwise than without the rule, "th*t", "t*o"
   and "ho*e" (now "that", "two", "home");
3. otherwise the commonest candidate is read when at least twice as many letters are visible as hidden and at
   least three are ("pl*ase", "pl*as*d" -> "please", "pleased"), or when a three-letter spelling hides one
   letter and fits a common word ("t*e" -> "the", not "x*y" -> "xxy"); with more hidden, many words fit and the
   mask stays as written.

Only masks between letters ("b#dw*rd") or two or more after at most three letters ("id***", "lo***") count; a
footnote star ("terms*"), markdown ("**bold**"), a hashtag, "C#", "50%", globs ("*.py") and products ("x*y",
"2*x") are not masked words and stay as they are.

**The harm lexicon** is learnt from labelled training rows (`build_lexicon`): for each training source with at
least `min_rows` harmful and `min_rows` benign posts, every word's log-odds ratio between harmful and benign
posts, with an informative Dirichlet prior (Monroe, Colaresi & Quinn 2008, "Fightin' Words"), as a z-score; a
word enters when its z-score is at least `min_z` in at least `min_sources` sources (one source's dialect or
topic is not a harm signal), scored by the sum of its z-scores. The lexicon is stored as salted SHA-256 digests
of the words with their scores (`masked_words.json`), never the words: this repository carries no list of
abusive words. At run time the digests are matched against the English vocabulary once per process (~0.5 s,
when a text encoder that normalises is built).

The shipped lexicon is built from the shipped model's training split (permissively licensed sets only):

    python -m moderation.encoders.masked_words configs/default.yaml moderation/encoders/masked_words.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path

from moderation.encoders.words import english_words

log = logging.getLogger(__name__)

LEXICON_PATH = Path(__file__).with_name("masked_words.json")
MASK_SYMBOLS = "*#%"
SALT = "moderation-masked-words-v1:"
# How much likelier a harm word is to be masked than an ordinary word: evaders mask the words a list would
# catch, so a harm word that fits wins over commoner ordinary words, but not over one this many times as common.
# Without this, every "th*t" read as a rare insult that fits it, in benign posts too.
HARM_WORD_ODDS = 100.0
# A common word in wordsegment's web counts (about the 6,000 commonest): "the", "you", "was", not "xxy" or "afb".
COMMON_WORD_COUNT = 1e7

# A masked word: letters with masks between them ("st*pid", "b#dw*rd"), or at most three letters followed by two
# or more masks ("id***", "lo***"). Nothing word-like, no mask and no leet symbol glued to either end.
_MASKED = re.compile(r"(?<![\w*#%@$&/.])(?:[A-Za-z]+(?:[*#%]+[A-Za-z]+)+|[A-Za-z]{1,3}[*#%]{2,})(?![\w*#%])")
_WORD = re.compile(r"[a-z]+")


def digest(word: str) -> str:
    """The stored form of a lexicon word: 16 hex digits of the salted SHA-256 of its lower-case spelling."""
    return hashlib.sha256((SALT + word.lower()).encode()).hexdigest()[:16]


@lru_cache(maxsize=1)
def _stored_bytes() -> bytes:
    return LEXICON_PATH.read_bytes()


@lru_cache(maxsize=1)
def _stored() -> dict:
    return json.loads(_stored_bytes())


def lexicon_id() -> str:
    """Identifies the shipped lexicon (its file's digest): part of the normaliser's identity in embedding caches."""
    return hashlib.sha256(_stored_bytes()).hexdigest()[:12]


@lru_cache(maxsize=1)
def _english_by_shape() -> dict[tuple[int, str], list[str]]:
    """English words (lower-case ASCII letters, three or more) grouped by (length, first letter)."""
    groups: dict[tuple[int, str], list[str]] = {}
    for word in english_words().UNIGRAMS:
        if len(word) >= 3 and word.isascii() and word.isalpha():
            groups.setdefault((len(word), word[0]), []).append(word)
    return groups


@lru_cache(maxsize=1)
def harm_lexicon() -> dict[str, float]:
    """{English word: score} of the shipped lexicon, its digests matched against the English vocabulary."""
    scores = _stored()["digests"]
    words = (word for group in _english_by_shape().values() for word in group)
    found = {word: scores[d] for word in words if (d := digest(word)) in scores}
    log.debug("harm lexicon: %d of %d digests matched English words", len(found), len(scores))
    return found


def _candidates(masked: str) -> list[str]:
    low = masked.lower()
    pattern = re.compile("".join("[a-z]" if c in MASK_SYMBOLS else c for c in low))
    if low[0] in MASK_SYMBOLS:
        groups = [g for (n, _), g in _english_by_shape().items() if n == len(low)]
    else:
        groups = [_english_by_shape().get((len(low), low[0]), [])]
    return [w for group in groups for w in group if pattern.fullmatch(w)]


@lru_cache(maxsize=4096)
def read_masked_word(masked: str, lexicon: tuple[tuple[str, float], ...] | None = None) -> str:
    """The word a masked spelling stands for (module doc), in the spelling's case; itself when none is clear.

    `lexicon` replaces the shipped harm lexicon (tests); as a tuple of (word, score) pairs, so it can be cached.

    >>> read_masked_word("pl*ase"), read_masked_word("P***se"), read_masked_word("T*e"), read_masked_word("x*y")
    ('please', 'P***se', 'The', 'x*y')
    """
    harm = dict(lexicon) if lexicon is not None else harm_lexicon()
    fits = _candidates(masked)
    # A symbol put between the letters of a harm word rather than over one ("st*upid" for the word without it).
    squeezed = "".join(c for c in masked.lower() if c not in MASK_SYMBOLS)
    harmful = [w for w in {*fits, squeezed} if w in harm]
    hidden = sum(c in MASK_SYMBOLS for c in masked)
    shown = len(masked) - hidden
    counts = english_words().UNIGRAMS
    commonest = max(fits, key=lambda w: counts.get(w, 0.0)) if fits else None
    readable = commonest is not None and (
        (shown >= 3 and shown >= 2 * hidden)
        or (shown == 2 and hidden == 1 and counts.get(commonest, 0.0) >= COMMON_WORD_COUNT))
    if harmful:
        word = max(harmful, key=lambda w: (harm[w], counts.get(w, 0.0)))
        if readable and commonest not in harm and counts.get(commonest, 0.0) > HARM_WORD_ODDS * counts.get(word, 0.0):
            word = commonest
    elif readable:
        word = commonest
    else:
        return masked
    letters = [c for c in masked if c.isalpha()]
    if len(letters) > 1 and all(c.isupper() for c in letters):
        return word.upper()
    return word.capitalize() if masked[0].isupper() else word


def unmask(text: str) -> str:
    """Read back every masked word of `text` (`read_masked_word`); everything else stays as written.

    >>> unmask("pl*ase sign here*, see **notes**, C# and 50% off, x*y")
    'please sign here*, see **notes**, C# and 50% off, x*y'
    """
    if not any(c in MASK_SYMBOLS for c in text):
        return text
    return _MASKED.sub(lambda m: read_masked_word(m.group(0)), text)


def _z_scores(harmful: Counter, benign: Counter, min_count: int, prior: float) -> dict[str, float]:
    """Each word's log-odds ratio (harmful vs benign rows) over its standard deviation, with an informative
    Dirichlet prior proportional to the word's overall frequency (Monroe, Colaresi & Quinn 2008, eq. 16-22)."""
    total = harmful + benign
    n_all, n_harm, n_benign = sum(total.values()), sum(harmful.values()), sum(benign.values())
    out = {}
    for word, count in total.items():
        if count < min_count:
            continue
        alpha = prior * count / n_all
        h, b = harmful[word] + alpha, benign[word] + alpha
        delta = math.log(h / (n_harm + prior - h)) - math.log(b / (n_benign + prior - b))
        out[word] = delta / math.sqrt(1 / h + 1 / b)
    return out


def build_lexicon(rows: Iterable[tuple[str | None, str, bool | None]], min_rows: int = 100, min_count: int = 5,
                  min_z: float = 2.0, min_sources: int = 2, prior: float = 500.0) -> dict[str, float]:
    """{word: score} from (text, source, harmful) rows; harmful is None where no label is known (row skipped).

    Words are lower-case ASCII runs of three letters or more that are English words (module doc for the rule).
    """
    vocabulary = english_words().UNIGRAMS
    counts: dict[str, tuple[Counter, Counter, Counter]] = {}  # harmful words, benign words, rows of each
    for text, source, harmful in rows:
        if not text or harmful is None:
            continue
        words = {w for w in _WORD.findall(text.lower()) if len(w) >= 3 and w in vocabulary}
        counts.setdefault(source, (Counter(), Counter(), Counter()))
        harm, benign, rows_seen = counts[source]
        (harm if harmful else benign).update(words)
        rows_seen["harmful" if harmful else "benign"] += 1
    agree: Counter = Counter()
    score: Counter = Counter()
    used = []
    for source, (harm, benign, rows_seen) in sorted(counts.items()):
        if rows_seen["harmful"] < min_rows or rows_seen["benign"] < min_rows:
            log.info("%s: %d harmful / %d benign rows, fewer than %d: not used", source, rows_seen["harmful"],
                     rows_seen["benign"], min_rows)
            continue
        used.append(source)
        for word, z in _z_scores(harm, benign, min_count, prior).items():
            if z >= min_z:
                agree[word] += 1
                score[word] += z
    lexicon = {w: round(score[w], 2) for w in agree if agree[w] >= min_sources}
    log.info("harm lexicon: %d words, z >= %.1f in >= %d of %d sources (%s)", len(lexicon), min_z, min_sources,
             len(used), ", ".join(used))
    return lexicon


def write_lexicon(lexicon: dict[str, float], path: Path, about: dict) -> None:
    """Store the lexicon as salted digests (no word in clear), sorted, with how it was built."""
    digests = dict(sorted((digest(w), s) for w, s in lexicon.items()))
    path.write_text(json.dumps({"about": about, "salt": SALT, "digests": digests}, indent=1) + "\n", encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> None:
    from moderation.config import load_config
    from moderation.data.build import build_splits

    parser = argparse.ArgumentParser(prog="python -m moderation.encoders.masked_words",
                                     description="Build the hashed harm lexicon that reads masked words back.")
    parser.add_argument("config", help="a training config; its training split is read")
    parser.add_argument("out", type=Path, help="where to write the lexicon (JSON)")
    parser.add_argument("--min-z", type=float, default=2.0)
    parser.add_argument("--min-sources", type=int, default=2)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    config = load_config(args.config)
    train = build_splits(config)["train"]

    def harmful(labels, mask):
        known = [y for y, m in zip(labels, mask) if m]
        return any(y > 0.5 for y in known) if known else None

    rows = ((t, s, harmful(y, m)) for t, s, y, m in zip(train["text"], train["source"], train["labels"],
                                                      train["label_mask"]))
    lexicon = build_lexicon(rows, min_z=args.min_z, min_sources=args.min_sources)
    about = {"config": str(args.config), "rows": len(train), "words": len(lexicon), "min_z": args.min_z,
             "min_sources": args.min_sources, "command": f"python -m moderation.encoders.masked_words "
                                                         f"{args.config} {args.out}"}
    write_lexicon(lexicon, args.out, about)
    print(f"wrote {len(lexicon)} hashed words to {args.out}")


if __name__ == "__main__":
    main()
