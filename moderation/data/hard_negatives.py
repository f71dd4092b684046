"""Hard negatives and counterfactuals: benign texts that use harm words, and identity-term swaps.

`generate(n, seed, split)` writes `n` distinct benign texts from templates x slot fillers
(moderation.data.hard_negative_templates, written by the project), balanced over eleven kinds: computing
jargon ("kill the background job"), figurative speech, sport and video games, cooking and gardening, legal
definitions, history and news reports, fiction summaries, medical and safety information, counter-speech
that rejects an insult (a placeholder such as "[insult]", never a real one) or a mild stereotype, neutral
sentences that mention identity groups, and questions whose premise is nonsense ("should lamps be allowed
to vote?": the frame of a discriminatory question about things that are not people). Rows are in the
generic JSONL format with every category labelled 0 and `source` "hard_negatives"; the kind is in the id
(`hardneg-train-jargon-00017`) so rates can be read per kind.

`split="probe"` uses other templates (questions, mostly) than `split="train"`, so the share of harmless
texts that a model flags can be measured on sentences it never trained on. The two never share a text.

`identity_swaps(rows, groups, seed)` adds, for each labelled row that mentions an identity term, a copy
with that term swapped for another of the same list, labels kept (what is hateful about one group is
hateful about another), so the model cannot learn a group's name as a harm signal.

A config uses them through the generic loader, after writing the files once:

    python -m moderation.data.hard_negatives data/hard_negatives.jsonl --n 3300 --seed 0
    python -m moderation.data.hard_negatives data/harmless_probe.jsonl --n 600 --seed 0 --split probe

    datasets:
      hard_negatives: {loader: jsonl, path: data/hard_negatives.jsonl, use: train_only, license: Apache-2.0}
      harmless_probe: {loader: jsonl, path: data/harmless_probe.jsonl, use: eval_only, license: Apache-2.0}

A `loader: hard_negatives` entry with `n` and `seed` would need new DatasetConfig fields and a new branch
in moderation.data.build; the file route needs neither.
"""

from __future__ import annotations

import argparse
import logging
import random
import re
import string
from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path

from moderation.data.generic import write_jsonl
from moderation.data.hard_negative_templates import PROBE_TEMPLATES, SLOTS, TRAIN_TEMPLATES

log = logging.getLogger(__name__)

SOURCE = "hard_negatives"
SPLITS = {"train": TRAIN_TEMPLATES, "probe": PROBE_TEMPLATES}
KINDS = tuple(TRAIN_TEMPLATES)
# The shipped taxonomy (configs/default.yaml); pass `categories` for another one.
DEFAULT_CATEGORIES = ("toxicity", "hate", "harassment", "sexual", "violence", "self_harm")
# Interchangeable identity terms for counterfactual swaps, one list per grammatical role. Colour words
# ("black", "white") are left out of the adjectives: "black coffee" is not about people.
IDENTITY_NOUNS = SLOTS["group"]
IDENTITY_ADJECTIVES = tuple(a for a in SLOTS["group_adj"] if a.lower() not in {"black", "white"})

_FORMATTER = string.Formatter()
_MAX_REPEATS = 300
_ARTICLE = re.compile(r"\b([Aa]) (?=[AEIOUaeiou])")


def _fill(template: str, rng: random.Random) -> str:
    values: dict[str, str] = {}
    for _, field, _, _ in _FORMATTER.parse(template):
        if field and field not in values:
            base = field[:-1] if field.endswith("2") else field
            if base not in SLOTS:
                raise KeyError(f"template {template!r}: no slot {base!r} (known: {sorted(SLOTS)})")
            choices = [v for v in SLOTS[base] if v != values.get(base)]
            values[field] = rng.choice(choices)
    text = _ARTICLE.sub(r"\1n ", template.format(**values))  # "a Indian" -> "an Indian"
    return text[0].upper() + text[1:]


@lru_cache(maxsize=1)
def _train_patterns() -> list[re.Pattern]:
    patterns = []
    for template in (t for ts in TRAIN_TEMPLATES.values() for t in ts):
        parts = [re.escape(literal) + (".+" if field else "") for literal, field, _, _ in _FORMATTER.parse(template)]
        patterns.append(re.compile("".join(parts), re.IGNORECASE | re.DOTALL))
    return patterns


def _from_train_template(text: str) -> bool:
    """Whether a train template could have written `text` (so a probe text never repeats a training one)."""
    text = re.sub(r"\b(an) ", "a ", text, flags=re.IGNORECASE)  # undo the article fix before matching
    return any(p.fullmatch(text) for p in _train_patterns())


def generate(n: int, seed: int = 0, split: str = "train", categories: Sequence[str] = DEFAULT_CATEGORIES) -> list[dict]:
    """`n` distinct benign rows, the kinds in turn, seeded: the same arguments give the same rows.

    Each kind gives a few hundred distinct texts (about 5,000 for train, 1,000 for probe in all); a kind that
    is used up drops out of the rotation with a warning, and asking for more than all kinds give raises.

    >>> rows = generate(3, seed=0)
    >>> [r["id"] for r in rows]
    ['hardneg-train-jargon-00000', 'hardneg-train-figurative-00001', 'hardneg-train-games_sport-00002']
    >>> rows[0]["labels"]["hate"], rows[0]["source"]
    (0, 'hard_negatives')
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {sorted(SPLITS)}, got {split!r}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    templates = SPLITS[split]
    rng = random.Random(f"{split}:{seed}")
    rows: list[dict] = []
    seen: set[str] = set()
    kinds = list(KINDS)
    misses = dict.fromkeys(kinds, 0)
    while len(rows) < n:
        if not kinds:
            raise ValueError(f"only {len(rows)} distinct {split} texts could be drawn, asked for {n}")
        kind = kinds[len(rows) % len(kinds)]
        text = _fill(rng.choice(templates[kind]), rng)
        if text in seen or (split == "probe" and _from_train_template(text)):
            misses[kind] += 1
            # So many repeats in a row: this kind's templates are (nearly) used up; the others go on.
            if misses[kind] > _MAX_REPEATS:
                log.warning("hard negatives: %s kind %r used up after %d texts", split, kind,
                            sum(r["id"].split("-")[2] == kind for r in rows))
                kinds.remove(kind)
            continue
        misses[kind] = 0
        seen.add(text)
        rows.append({
            "id": f"hardneg-{split}-{kind}-{len(rows):05d}",
            "text": text,
            "labels": {c: 0 for c in categories},
            "source": SOURCE,
        })
    return rows


def write_hard_negatives(path: str | Path, n: int, seed: int = 0, split: str = "train",
                         categories: Sequence[str] = DEFAULT_CATEGORIES) -> Path:
    """Write `generate(n, seed, split, categories)` as generic JSONL at `path` (for `loader: jsonl`)."""
    out = write_jsonl(generate(n, seed, split, categories), Path(path))
    log.info("wrote %d %s hard negatives to %s", n, split, out)
    return out


def _term_pattern(terms: Iterable[str]) -> re.Pattern:
    # Longest first, so "Black people" wins over a shorter term inside it.
    alternatives = "|".join(re.escape(t) for t in sorted(set(terms), key=len, reverse=True))
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE)


def _as_lists(groups: Sequence[str] | Sequence[Sequence[str]]) -> list[list[str]]:
    if not groups:
        raise ValueError("groups: give at least one list of interchangeable identity terms")
    lists = [list(groups)] if isinstance(groups[0], str) else [list(g) for g in groups]
    for terms in lists:
        if len(terms) < 2 or not all(isinstance(t, str) and t.strip() for t in terms):
            raise ValueError(f"groups: each list needs two or more non-empty terms to swap, got {terms!r}")
    return lists


def identity_swaps(rows: Sequence[dict],
                   groups: Sequence[str] | Sequence[Sequence[str]] = (IDENTITY_NOUNS, IDENTITY_ADJECTIVES),
                   seed: int = 0) -> list[dict]:
    """The rows, then a copy of each row that mentions an identity term, with that term swapped.

    `groups` is one list of interchangeable terms, or several (nouns with nouns, adjectives with
    adjectives). The first term found in a row is replaced everywhere in it by another term of its list;
    labels, split and source are kept (the source gains "+identity_swap"), a `target` naming the old term
    names the new one. A swapped row and its copy share a `group` (the row's, else its id), so they land
    in the same split: a swapped copy of a test row never trains the model. Other rows are returned as given.

    >>> out = identity_swaps([{"id": "1", "text": "Women are great", "labels": {"hate": 0}}], ["women", "men"])
    >>> [(r["id"], r["text"], r["group"]) for r in out]
    [('1', 'Women are great', '1'), ('1~swap', 'Men are great', '1')]
    """
    lists = _as_lists(groups)
    patterns = [_term_pattern(terms) for terms in lists]
    rng = random.Random(seed)
    originals, swapped = [], []
    for row in rows:
        copy = _swap(row, lists, patterns, rng)
        if copy is not None:
            # Pin the pair to one split; rows without a copy keep their grouping (by normalised text).
            row = {**row, "group": row.get("group") or str(row["id"])}
            copy["group"] = row["group"]
            swapped.append(copy)
        originals.append(row)
    log.info("identity swaps: %d of %d rows mention a listed identity term", len(swapped), len(originals))
    return originals + swapped


def _swap(row: dict, lists: list[list[str]], patterns: list[re.Pattern], rng: random.Random) -> dict | None:
    text = row.get("text") or ""
    found = [(m.start(), k, m.group(0)) for k, p in enumerate(patterns) if (m := p.search(text))]
    if not found:
        return None
    _, k, term = min(found)
    others = [t for t in lists[k] if t.lower() != term.lower()]
    new = rng.choice(others)

    def replace(match: re.Match) -> str:
        # A capital that only starts a sentence carries over; elsewhere the list's own spelling is right.
        at_sentence_start = match.start() == 0 or re.search(r"[.!?]\s+$", text[:match.start()])
        return new[0].upper() + new[1:] if at_sentence_start and match.group(0)[0].isupper() else new

    pattern = re.compile(rf"(?<!\w){re.escape(term)}(?!\w)", re.IGNORECASE)
    copy = {**row, "id": f"{row['id']}~swap", "text": pattern.sub(replace, text)}
    copy["source"] = f"{row['source']}+identity_swap" if row.get("source") else "identity_swap"
    target = row.get("target")
    if target:
        targets = [target] if isinstance(target, str) else list(target)
        copy["target"] = [new.lower() if t.lower() == term.lower() else t for t in targets]
    return copy


def main(argv: Sequence[str] | None = None) -> None:
    """`python -m moderation.data.hard_negatives OUT.jsonl [--n N] [--seed S] [--split train|probe]`."""
    parser = argparse.ArgumentParser(prog="python -m moderation.data.hard_negatives",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path, help="JSONL file to write")
    parser.add_argument("--n", type=int, default=3000, help="number of rows")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--split", choices=sorted(SPLITS), default="train")
    parser.add_argument("--categories", nargs="+", default=list(DEFAULT_CATEGORIES), help="categories labelled 0")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    write_hard_negatives(args.out, args.n, args.seed, args.split, args.categories)


if __name__ == "__main__":
    main()
