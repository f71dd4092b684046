"""moderation.encoders.masked_words: masked words read back, ordinary text left alone, the lexicon kept hashed."""

from __future__ import annotations

import json
import re

import pytest

from moderation.encoders import masked_words
from moderation.encoders.masked_words import build_lexicon, digest, read_masked_word, unmask, write_lexicon
from moderation.encoders.normalize import normalize_text


def test_the_lexicon_decides_before_the_commonest_word():
    # "bad" is the commoner English word; a lexicon that scores "bed" as the harm word reads "bed".
    assert read_masked_word("b*d", lexicon=()) == "bad"
    assert read_masked_word("b*d", lexicon=(("bed", 5.0),)) == "bed"
    # Among several lexicon words that fit, the higher score wins.
    assert read_masked_word("b*d", lexicon=(("bed", 5.0), ("bid", 9.0))) == "bid"


def test_an_ordinary_word_far_commoner_than_the_harm_word_that_fits_wins():
    # "that" is over 10,000 times as common as "thet": a masked vowel there means "that", whatever the lexicon says.
    assert read_masked_word("th*t", lexicon=(("thet", 5.0),)) == "that"
    assert read_masked_word("th*t") == "that"  # the shipped lexicon holds a rare insult that fits
    # Within HARM_WORD_ODDS the lexicon still decides: "bad" is commoner than "bed", not a hundred times.
    assert read_masked_word("b*d", lexicon=(("bed", 5.0),)) == "bed"
    # Only where the ordinary reading would be taken at all: with most letters hidden, the lexicon's word stays.
    assert read_masked_word("id***", lexicon=(("idiot", 5.0),)) == "idiot"
    assert read_masked_word("id***", lexicon=()) == "id***"


def test_the_shipped_lexicon_reads_insults_back_where_the_commonest_word_would_not():
    for masked, meant, commonest in [("h*ll", "hell", "hill"), ("l*ser", "loser", "laser"), ("sl*p", "slap", "slip")]:
        assert read_masked_word(masked, lexicon=()) == commonest
        assert read_masked_word(masked) == meant
    assert normalize_text("you are so st*pid, what an id*ot") == "you are so stupid, what an idiot"


def test_a_symbol_put_between_the_letters_of_a_harm_word():
    lexicon = (("bead", 5.0),)
    assert read_masked_word("be*ad", lexicon=lexicon) == "bead"       # no 5-letter word "be?ad" is in the lexicon
    assert read_masked_word("be*ad", lexicon=()) == "be*ad"           # not read as a harmless word that way
    assert read_masked_word("bre*ad", lexicon=()) == "bre*ad"


def test_how_much_may_be_hidden():
    none = ()
    assert read_masked_word("pl*ase", lexicon=none) == "please"      # one hidden, five shown
    assert read_masked_word("pl*as*d", lexicon=none) == "pleased"   # two hidden, five shown
    assert read_masked_word("p***se", lexicon=none) == "p***se"     # three hidden, three shown: too many fit
    assert read_masked_word("t*e", lexicon=none) == "the"           # three letters: only a common word
    assert read_masked_word("x*y", lexicon=none) == "x*y"
    assert read_masked_word("qzx*v", lexicon=none) == "qzx*v"       # no English word fits
    assert read_masked_word("id***", lexicon=none) == "id***"       # three hidden, two shown: only the lexicon reads it
    assert read_masked_word("b***", lexicon=(("bed", 5.0), ("bead", 6.0))) == "bead"


def test_case_is_kept():
    assert read_masked_word("Pl*ase", lexicon=()) == "Please"
    assert read_masked_word("PL*ASE", lexicon=()) == "PLEASE"
    assert unmask("PL*ASE come, Pl*ase") == "PLEASE come, Please"


@pytest.mark.parametrize("text", [
    "Terms apply* and prices vary**.",
    "This is **bold** and *italic* text.",
    "Run pytest on tests/**/*.py and file*.txt, or rm -rf build/*",
    "Compute x*y and 2*x, a*b*c, width*height, 3*4=12.",
    "Learn C# and F# at #python #h*tag meetups; 50% off, 20%-30% more.",
    "Mail *@example.com or a*b@example.org.",
    "Footnote*: see below. Rated 5*.",
    "",
])
def test_ordinary_text_with_stars_and_hashes_is_unchanged(text):
    assert unmask(text) == text
    assert normalize_text(text) == text


def test_build_lexicon_keeps_words_harmful_in_two_sources_only():
    rows = []
    for source in ("forum", "tweets"):
        for i in range(120):
            rows.append((f"the zebra came back {i}", source, True))
            rows.append((f"the table was set {i}", source, False))
            rows.append((f"a window and a lamp {i}", source, i % 2 == 0))
    rows += [(f"a giraffe again {i}", "forum", True) for i in range(40)]   # harmful in one source only
    rows += [(f"a chair {i}", "tiny", True) for i in range(20)]            # a source too small to count
    rows += [("text without labels", "forum", None), (None, "forum", True)]
    lexicon = build_lexicon(rows)
    assert "zebra" in lexicon and lexicon["zebra"] > 4
    assert not {"giraffe", "table", "window", "lamp", "chair", "the"} & set(lexicon)
    assert build_lexicon(rows, min_sources=1).keys() >= {"zebra", "giraffe"}


def test_the_lexicon_is_stored_hashed(tmp_path):
    path = tmp_path / "lexicon.json"
    write_lexicon({"zebra": 7.5}, path, about={"rows": 1})
    stored = json.loads(path.read_text())
    assert "zebra" not in path.read_text()
    assert stored["digests"] == {digest("zebra"): 7.5} and stored["salt"] == masked_words.SALT


def test_the_shipped_lexicon_is_digests_of_english_words():
    stored = json.loads(masked_words.LEXICON_PATH.read_text())
    assert stored["about"]["words"] == len(stored["digests"]) >= 50
    assert all(re.fullmatch(r"[0-9a-f]{16}", d) for d in stored["digests"])
    # Built from English words only, so every digest is found again at run time.
    assert len(masked_words.harm_lexicon()) == len(stored["digests"])


def test_the_encoder_cache_key_follows_the_lexicon(monkeypatch):
    from moderation.encoders import normalize

    before = normalize.identity()
    monkeypatch.setattr(normalize, "lexicon_id", lambda: "another")
    assert normalize.identity() != before and normalize.identity().startswith(f"{normalize.VERSION}-")
