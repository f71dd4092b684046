"""Text normalisation before encoding: undo the rewrites evaders use, leave ordinary text as it is.

`normalize_text` runs seven steps, in this order (each step's output is what the next one sees):

1. Unicode NFKC: fullwidth, circled and mathematical letters become plain ones ("ｈａｔｅ", "𝐡𝐚𝐭𝐞" -> "hate").
   Number forms (Unicode category No: "½", "²", "①") are kept as they are, because NFKC would turn "2½"
   into "21⁄2". NFKC still rewrites a few ordinary characters ("…" -> "...", "ﬁ" -> "fi", "™" -> "TM",
   no-break space -> space); accented letters are kept (composed, as NFC).
2. Invisible characters: format characters (zero-width space, word joiner, BOM, soft hyphen, bidi controls),
   control characters other than tab and line breaks, and combining marks stacked on an ASCII letter
   ("strike-through" and zalgo text) are removed. Zero-width (non-)joiners are kept between non-Latin
   characters, where they are real orthography (Persian, Indic scripts) or build emoji sequences.
3. Spaced letters: letters joined by one kind of punctuation are joined first ("s.t.u.p.i.d", "i-d-i-o-t",
   "h_a_t_e" -> "stupid", "idiot", "hate"; three or more single ASCII letters, one separator throughout;
   "e.g." and "a.m." stay, "U.S.A." becomes "USA."). Then a run of at least three single Latin letters (or
   look-alikes) separated by one space is joined ("h a t e" -> "hate"; "F a k e  N e w s" -> "Fake  News";
   a leading pronoun stays apart: "I h a t e" -> "I hate"). Shorter runs are left ("plan B" and "I a" are ordinary), and so is chat-speak
   of up to four letters ("u r a", "y r u"); an enumeration of three or more single capitals ("A B C") is
   joined, which changes no meaning.
4. Look-alikes: Cyrillic and Greek letters that look like Latin ones are folded to them inside a word that
   also has a Latin letter ("hаte" with a Cyrillic "а"), and in a word made only of look-alikes when the
   text as a whole is mostly Latin. A Russian or Greek text keeps its letters, and so does a lone symbol
   such as "π" or "ρ" in a formula. The table is Unicode's confusables data (UTS #39), read from the
   `confusable-homoglyphs` package (MIT), restricted to Cyrillic and Greek letters whose look-alike is one
   ASCII letter; UTS #39 skeletons fold capital I to "l", we fold capital iota/I-like letters to "I", and
   add the small-capital forms it leaves out (к м т п).
5. Leetspeak: inside a run of ASCII letters, digits and @ $ ! that has a digit or symbol *between two
   letters* ("h4te", "k1ll", "sh!t"), the leet characters 0 1 3 4 5 7 @ $ ! become o i e a s t a s i. A
   symbol before a capital letter, "!!", or "!" between two words ("happy!hope") is punctuation or a glued
   mention ("wow!!Great", "hi@USER"). Digits glued between words still fold ("All4truth" -> "Allatruth").
   Left alone: numbers ("2024", "1,000"), digits only at a word's edge ("2nd", "10am", "mp3", "covid19",
   "4x4"), runs whose inner digits are not leet ("b2b", "x86x", "abc123def"), short all-capital codes
   ("C3PO", "R2D2", "W3C"), hex identifiers ("0c1fbd2"), numeronyms ("i18n", "l10n", "k8s"), URLs, e-mail
   addresses, @mentions and #hashtags. Chat alphabets that write letters as digits (Arabizi "3", "7") are
   folded like leet; the model reads English.

6. Stretched words: a letter written three or more times in a row becomes one or two, whichever spelling is
   the commonest English word (`wordsegment`'s counts): "stuuupid" -> "stupid", "sooo" -> "so"; two when no
   spelling is a word. Words of one letter ("zzz", "III") and addresses ("www.") are left.

7. Masked words: letters hidden behind `* # %` ("st*pid", "id**t", "id***") are read back as the harm word that
   fits, from a lexicon learnt from the training data and stored hashed, or, when at least twice as many letters
   show as hide, the commonest English word that fits ("pl*ase"); otherwise the mask stays
   (`moderation.encoders.masked_words`). The commonest fit alone would often not be the word meant ("l*ser"
   fits "laser" best), which is why the lexicon decides first.

Whatever is not one of these rewrites passes through unchanged; tests/test_normalize.py checks that on a few
hundred ordinary sentences. Enabled per model by `text_encoder.normalize` (default off: the shipped model
was trained on raw text), and part of the text encoder's identity so embedding caches never mix.

>>> normalize_text("how do I k1ll the h\u200ba\u200bt\u200be")
'how do I kill the hate'
>>> normalize_text("ｔｈｉｓ is h а t е, plain since 2024, C3PO and the 2nd mp3")
'this is hate, plain since 2024, C3PO and the 2nd mp3'
>>> normalize_text("Привет, мир")
'Привет, мир'
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from itertools import product

from moderation.encoders.masked_words import harm_lexicon, lexicon_id, unmask
from moderation.encoders.words import english_words

# Bumped whenever a rule changes what normalize_text writes: the text encoder's embedding-cache identity
# includes it (and the masked-word lexicon's digest, `identity()`), so texts cached under an older rule are
# embedded again. 2: punctuated letters, mask symbols; 3: stretched words read back; 4: masked words read back;
# 5: a harm word with a symbol put between its letters ("st*upid") read back too; 6: an ordinary word over
# a hundred times as common as the harm word that fits a mask is read instead ("th*t").
VERSION = 6

# Zero-width (non-)joiners: kept between non-Latin characters, where they are orthography or emoji glue.
_JOINERS = {"\u200c", "\u200d"}
_KEEP_CONTROLS = {"\t", "\n", "\r", "\x0b", "\x0c"}
_ASCII_CONTROLS = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")

# UTS #39 skeletons map capital I (and letters that look like it) to "l"; for folding text "I" is the
# reading a human makes of a capital iota.
_UPPER_I_LIKE = {"Ι": "I", "І": "I", "Ӏ": "I"}
# Lower-case Cyrillic letters that look like Latin small capitals; UTS #39 does not list them (they differ
# in most fonts), but evaders use them. Folded only under the same word rules as the table.
_SMALL_CAPITALS = {"к": "k", "м": "m", "т": "t", "п": "n"}

LEET = {"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s", "!": "i"}
_LEET_SYMBOLS = "@$!"  # at a word's edge these are punctuation, not letters ("k1ll!", "@h4te")
# Numeronyms and names whose inner digits are not leet (lower-cased); extend when one shows up.
NUMERONYMS = frozenset({"a11y", "i18n", "l10n", "g11n", "m17n", "o11y", "p13n", "k8s", "log4j", "log4net",
                        "log4shell", "hba1c", "h1n1", "h5n1", "h7n9", "h1b"})

# One-letter chat-speak words ("u" you, "r" are, "y" why, "n" and, "m" am): short runs of only these stay.
_CHAT_LETTERS = frozenset("aiurynm")
_RUN = re.compile(r"[A-Za-z0-9@$!]+")
_HEX_ID = re.compile(r"[0-9a-fA-F]{7,}")
_SKIP_CHUNK = re.compile(r"^[@#]|://|^www\.|[^\s@]@[^\s@]+\.[A-Za-z]")


@lru_cache(maxsize=1)
def confusable_table() -> dict[str, str]:
    """{Cyrillic or Greek letter: the ASCII letter it looks like}, from Unicode's confusables data."""
    from confusable_homoglyphs import categories, confusables

    table = {}
    for char, homoglyphs in confusables.confusables_data.items():
        if len(char) != 1 or not char.isalpha() or categories.alias(char) not in ("CYRILLIC", "GREEK"):
            continue
        latin = [h["c"] for h in homoglyphs if len(h["c"]) == 1 and h["c"].isascii() and h["c"].isalpha()]
        if latin:
            table[char] = latin[0]
    table.update(_UPPER_I_LIKE)
    table.update(_SMALL_CAPITALS)
    table.update({k.upper(): v.upper() for k, v in _SMALL_CAPITALS.items()})
    return table


def _is_latin(char: str) -> bool:
    return char.isascii() and char.isalpha() or char.isalpha() and unicodedata.name(char, "").startswith("LATIN")


def nfkc(text: str) -> str:
    """NFKC everywhere except on number forms (category No), whose NFKC form changes the number.

    >>> nfkc("ｆｕｌｌ width, 2½ cups, x²")
    'full width, 2½ cups, x²'
    """
    if not any(unicodedata.category(c) == "No" for c in text):
        return unicodedata.normalize("NFKC", text)
    out, start = [], 0
    for i, char in enumerate(text):
        if unicodedata.category(char) == "No":
            out += [unicodedata.normalize("NFKC", text[start:i]), char]
            start = i + 1
    out.append(unicodedata.normalize("NFKC", text[start:]))
    return "".join(out)


def strip_invisible(text: str) -> str:
    """Remove format and control characters and combining marks stacked on ASCII letters.

    >>> strip_invisible("ha\u200bte\u00ad! e\u0336v\u0336i\u0336l\u0336 caf\u00e9\\n")
    'hate! evil café\\n'
    """
    if text.isascii():  # the common case: only control characters can be there
        return _ASCII_CONTROLS.sub("", text)
    out: list[str] = []
    for i, char in enumerate(text):
        cat = unicodedata.category(char)
        if char in _JOINERS:
            if any(_is_latin(c) or c.isdigit() for c in _visible_neighbours(text, i)):
                continue
        elif cat == "Cf" or (cat == "Cc" and char not in _KEEP_CONTROLS):
            continue
        elif cat in ("Mn", "Me") and out and out[-1].isascii() and out[-1].isalpha():
            continue
        out.append(char)
    return "".join(out)


def _visible_neighbours(text: str, i: int) -> str:
    """The nearest characters before and after position i that are not format characters."""
    before = next((c for c in reversed(text[:i]) if unicodedata.category(c) != "Cf"), "")
    after = next((c for c in text[i + 1:] if unicodedata.category(c) != "Cf"), "")
    return before + after


def _spaced_letter_class() -> str:
    extra = "".join(sorted(confusable_table()))
    return "[A-Za-z" + re.escape(extra) + "]"


@lru_cache(maxsize=1)
def _spaced_pattern() -> re.Pattern:
    letter = _spaced_letter_class()
    # Each letter stands alone: no word character right before the run or right after it, nor a
    # contraction's apostrophe ("Trump's a a"; a quote is fine: "'c r u e l'"), nor a leet symbol inside a
    # word ("sh!t", "p@rk"); a closing "!" is punctuation ("g r e a t!"). One space between letters: two
    # spaces are a word boundary ("F a k e  N e w s").
    # A mask symbol glued to a letter ("b*d", "f#ck") makes it part of a word too.
    return re.compile(rf"(?<![\w@$!*#%])(?<!\w['’]){letter}(?: {letter}){{2,}}(?!\w|[@$!*#%]+\w)")


def rejoin_spaced(text: str) -> str:
    """Join runs of three or more single letters separated by spaces.

    >>> rejoin_spaced("I h a t e this, plan B, a b")
    'I hate this, plan B, a b'
    """
    return _spaced_pattern().sub(_join, text)


# Letters joined by one kind of punctuation ("s.t.u.p.i.d", "i-d-i-o-t", "h_a_t_e"): three or more single ASCII
# letters with the same separator throughout and nothing word-like glued to either end. Two-letter
# abbreviations ("e.g.", "a.m.") are left; "U.S.A." reads "USA.", which changes no meaning.
_PUNCTUATED = re.compile(r"(?<![\w.\-])([A-Za-z])([._-])[A-Za-z](?:\2[A-Za-z])+(?!\w|[._-]\w)")


def rejoin_punctuated(text: str) -> str:
    """Join runs of three or more single letters separated by one kind of punctuation.

    >>> rejoin_punctuated("a s.t.u.p.i.d i-d-e-a, e.g. at 9 a.m. in the U.S.A.")
    'a stupid idea, e.g. at 9 a.m. in the USA.'
    """
    return _PUNCTUATED.sub(lambda m: m.group(0).replace(m.group(2), ""), text)


def _join(match: re.Match) -> str:
    letters = match.group(0).split()
    # Chat-speak ("u r a", "y r u", "i m a") is words, not a spelled-out one.
    if len(letters) <= 4 and all(c.lower() in _CHAT_LETTERS for c in letters):
        return match.group(0)
    # A leading capital "I" is the pronoun ("I h a t e it"), kept apart when three letters follow it.
    if letters[0] == "I" and len(letters) >= 4:
        return "I " + "".join(letters[1:])
    return "".join(letters)


_WORD = re.compile(r"[^\W\d_]+")


def fold_confusables(text: str) -> str:
    """Fold Cyrillic/Greek look-alikes to Latin in mixed words, and in look-alike-only words of Latin text.

    >>> fold_confusables("the hаtеful ѕpam")
    'the hateful spam'
    >>> fold_confusables("density ρ and Ελλάδα")
    'density ρ and Ελλάδα'
    """
    table = confusable_table()
    if not any(c in table for c in text):
        return text
    latin = sum(1 for c in text if _is_latin(c))
    other = sum(1 for c in text if c.isalpha() and not _is_latin(c))
    mostly_latin = latin > other

    def fold(match: re.Match) -> str:
        word = match.group(0)
        if not any(c in table for c in word):
            return word
        has_latin = any(_is_latin(c) for c in word)
        only_lookalikes = all(c in table for c in word)
        if has_latin or (only_lookalikes and len(word) >= 2 and mostly_latin):
            return "".join(table.get(c, c) for c in word)
        return word

    return _WORD.sub(fold, text)


def _is_leet(run: str) -> bool:
    """Whether a run of [A-Za-z0-9@$!] reads as a word with leet characters inside it."""
    letters = [c for c in run if c.isalpha()]
    if len(letters) < 2 or run.lower() in NUMERONYMS or (_HEX_ID.fullmatch(run) and sum(c.isdigit() for c in run) >= 2):
        return False
    if re.search(r"\$\d", run):
        return False  # money ("US$5bn"), not a disguised "s"
    # Short all-capital codes with digits are names (C3PO, R2D2, W3C), not disguised words.
    if all(c.isupper() for c in letters) and len(letters) < 5:
        return False
    inner = run.strip("".join(LEET) + "0123456789")
    found = False
    for gap in re.finditer(r"[^A-Za-z]+", inner):
        text = gap.group(0)
        if not all(c in LEET for c in text):
            return False  # an inner "2", "6", "8" or "9": an identifier such as b2b or x86x
        # A symbol before a capital, or "!!", is punctuation or a glued mention ("wow!!Great", "hi@USER");
        # "!" between two words of three letters or more too ("happy!hope"), unlike "sh!t" or "b!tch".
        if any(c in _LEET_SYMBOLS for c in text) and (inner[gap.end()].isupper() or "!!" in text):
            return False
        if "!" in text and _letters_around(inner, gap.start(), gap.end()) >= (3, 3):
            return False
        found = True
    return found


def _letters_around(text: str, start: int, end: int) -> tuple[int, int]:
    """How many letters run up to `start` and on from `end` in `text` (the shorter side first)."""
    before = len(re.search(r"[A-Za-z]*$", text[:start]).group())
    after = len(re.match(r"[A-Za-z]*", text[end:]).group())
    return min(before, after), max(before, after)


def _fold_run(match: re.Match) -> str:
    run = match.group(0)
    if not _is_leet(run):
        return run
    upper = all(c.isupper() for c in run if c.isalpha())
    # Inner leet characters and digits at the edges fold; edge symbols are punctuation ("k1ll!", "@h4te").
    start = len(run) - len(run.lstrip(_LEET_SYMBOLS))
    end = len(run.rstrip(_LEET_SYMBOLS))
    body = "".join(LEET.get(c, c) for c in run[start:end])
    return run[:start] + (body.upper() if upper else body) + run[end:]


def fold_leet(text: str) -> str:
    """Fold leetspeak inside words; numbers, codes, identifiers, URLs and handles stay.

    >>> fold_leet("k1ll the pr0c3ss! 2nd try at 10am, C3PO, b2b, i18n, @us3r, a@b.com, 1d10t")
    'kill the process! 2nd try at 10am, C3PO, b2b, i18n, @us3r, a@b.com, idiot'
    """
    if not any(c in LEET for c in text):
        return text
    chunks = re.split(r"(\s+)", text)
    return "".join(c if _SKIP_CHUNK.search(c) else _RUN.sub(_fold_run, c) for c in chunks)


# A word with a letter written three or more times in a row ("stuuupid"), at least two different letters
# ("zzz", "III" and "www" are left), not part of an address, handle or identifier.
_STRETCHED_WORD = re.compile(r"(?<![\w./@#])[A-Za-z]*([A-Za-z])\1\1[A-Za-z]*(?![\w@/]|\.[A-Za-z])")
_REPEATED = re.compile(r"([A-Za-z])\1{2,}")


def unstretch(text: str) -> str:
    """Read back letters repeated for emphasis or to dodge a word list: each run of three or more becomes one
    or two letters, whichever spelling is the commonest English word ("stuuupid" -> "stupid", "cooool" ->
    "cool"); when no spelling is a word, two letters. Case is kept per word.

    >>> unstretch("you are stuuupid, sooo cool; Henry III slept, zzz, www.example.org")
    'you are stupid, so cool; Henry III slept, zzz, www.example.org'
    """
    if not _REPEATED.search(text):
        return text
    return _STRETCHED_WORD.sub(_unstretch_word, text)


def _unstretch_word(match: re.Match) -> str:
    word = match.group(0)
    if len(set(word.lower())) < 2:
        return word
    pieces = _REPEATED.split(word)  # text, run letter, text, run letter, ..., text
    between, runs = pieces[0::2], pieces[1::2]
    counts = english_words().UNIGRAMS
    best, best_count = None, 0.0
    if len(runs) <= 6:  # at most 2^6 spellings
        for repeats in product((1, 2), repeat=len(runs)):
            spelled = between[0] + "".join(run * n + after for run, n, after in zip(runs, repeats, between[1:]))
            count = counts.get(spelled.lower(), 0.0)
            if count > best_count:
                best, best_count = spelled, count
    if best is None:
        best = _REPEATED.sub(lambda m: m.group(1) * 2, word)
    return best.upper() if word.isupper() else best.capitalize() if word[0].isupper() else best


def normalize_text(text: str) -> str:
    """NFKC, invisible characters out, spaced letters joined, look-alikes, leetspeak, stretched and masked words
    read back (module doc).

    >>> normalize_text("The café opened in 2024; its owner, J. Smith, said \\"we're thrilled!\\"")
    'The café opened in 2024; its owner, J. Smith, said "we\\'re thrilled!"'
    """
    if not isinstance(text, str):
        raise TypeError(f"normalize_text expects a str, got {type(text).__name__}")
    text = nfkc(text)
    text = strip_invisible(text)
    text = rejoin_punctuated(text)  # first: "p.u.n.c" next to a spaced word must not read as a lone letter
    text = rejoin_spaced(text)
    text = fold_confusables(text)
    return unmask(unstretch(fold_leet(text)))


def prepare() -> None:
    """Load the tables the rules read (look-alikes, English word counts, the masked-word lexicon) now, so the
    first post with a stretched or masked word is not the one that waits for them."""
    confusable_table()
    harm_lexicon()  # loads the English word counts too


def identity() -> str:
    """What decides `normalize_text`'s output: the rules' version and the masked-word lexicon's digest."""
    return f"{VERSION}-{lexicon_id()}"


__all__ = ["LEET", "NUMERONYMS", "VERSION", "confusable_table", "fold_confusables", "fold_leet", "identity",
           "normalize_text", "prepare", "rejoin_punctuated", "rejoin_spaced", "strip_invisible", "unstretch"]
