"""moderation.encoders.normalize: each rule on its own, and ordinary text left exactly as it was."""

from __future__ import annotations

import itertools

import pytest

from moderation.encoders.normalize import (
    confusable_table,
    fold_confusables,
    fold_leet,
    normalize_text,
    rejoin_spaced,
    strip_invisible,
)

# Ordinary sentences that stress the rules' edges: numbers, codes, identifiers, handles, other scripts.
TRICKY_ORDINARY = [
    "The meeting moved to 10am on 2024-03-05, room 4B.",
    "We shipped v2.3.1 and 1,000 users upgraded by 5pm.",
    "C3PO and R2D2 are droids; W3C writes web standards.",
    "My flight is BA2490, seat 14C, gate B52.",
    "She ran the 4x4 relay and finished 2nd, then 1st in the 5k.",
    "The B2B and P2P teams met in Q3 to review the x86 build.",
    "Covid19 cases fell; wear an N95 or FFP2 mask.",
    "Play it in 1v1 or 5v5 mode on the PS5 at 4K and 60fps.",
    "Prices: $5 for tea, US$12 for lunch, €3.50 for coffee.",
    "Email me at jane.doe@example.com or visit https://example.org/a1b2?x=3&y=4.",
    "Thanks @sam_1984 and @r0b0t for the #100DaysOfCode tips!",
    "Commit 0c1fbd2 fixed the i18n and a11y bugs in the k8s chart.",
    "We patched log4j last week; HbA1c results came back normal.",
    "The H1N1 and H5N1 strains differ; so do MP3 and MP4 files.",
    "Call 555-0199 between 9-5, or text 24/7.",
    "Café owners in Zürich and São Paulo met the naïve coördinator.",
    "Ελλάδα and Россия are in Europe; the Greek letter π is about 3.14.",
    "The density ρ of water is 1 g/cm3 at 4 °C.",
    "Привет, как дела? Всё хорошо, спасибо.",
    "Καλημέρα, τι κάνεις;",
    "東京は大きな都市です。",
    "مرحبا بكم في المدينة",
    "नमस्ते, आप कैसे हैं?",
    "می\u200cخواهم به خانه بروم.",
    "Family emoji 👨\u200d👩\u200d👧 and a thumbs up 👍🏽 and a heart ❤️.",
    "Tabs\tand\nnew lines\r\nstay as they are.",
    "“Curly quotes” and ‘single ones’ — and an en dash – too.",
    "Plan B failed, so we tried plan C.",
    "Vitamin D and vitamin B12 help; so does an A+ diet.",
    "The U.S. and the U.K. signed it; e.g. trade, i.e. tariffs.",
    "I think I am right, and a friend agrees.",
    "Use Ctrl+C to copy and Alt+F4 to close the window.",
    "My password manager says abc123def is weak.",
    "The t3.micro and m5.large instances cost less than p3.",
    "Web3 and Win10 fans argued about iOS17 on Twitter.",
    "Agent 007 ordered a martini at 7:30pm.",
    "Rock'n'roll, don't, can't, won't, y'all, o'clock.",
    "The recipe needs 2½ cups of flour and 3 eggs.",
    "The score was 3-1 after 90+4 minutes.",
    "Yahoo! and Jeopardy! are names with exclamation marks.",
    "She scored 99% on the SAT and 36 on the ACT.",
    "Route 66 and Highway 101 are famous roads.",
    "The 1990s and the 2020s were very different decades.",
    "Grade A, grade B or grade C: pick one.",
    "J. R. R. Tolkien wrote The Hobbit.",
]

SUBJECTS = ["My neighbour", "The new teacher", "Our team", "A local bakery", "The city council", "Dr. Okafor",
            "The museum", "Her brother", "The small startup", "Every student"]
VERBS = ["opened", "painted", "announced", "repaired", "visited", "reviewed", "finished", "ordered"]
OBJECTS = ["a garden shed", "the quarterly report", "three new bikes", "the old library", "a birthday cake",
           "the train schedule", "12 chairs", "the 2025 budget", "a blue umbrella", "the project plan"]
TAILS = [" yesterday.", " on Monday morning.", " before lunch, as promised.", " in March 2024!",
         " after a long (and rainy) week.", " - finally.", "; everyone was pleased.", " at 3:45 pm?"]


def ordinary_sentences() -> list[str]:
    """A few hundred ordinary sentences from templates, plus the tricky ones above."""
    combos = itertools.product(SUBJECTS, VERBS, OBJECTS, TAILS)
    templated = [f"{s} {v} {o}{t}" for i, (s, v, o, t) in enumerate(combos) if i % 17 == 0]
    return templated + TRICKY_ORDINARY


def test_ordinary_text_is_unchanged():
    sentences = ordinary_sentences()
    assert len(sentences) > 300
    changed = [(s, normalize_text(s)) for s in sentences if normalize_text(s) != s]
    assert changed == []


def test_nfkc_folds_fullwidth_and_math_letters():
    assert normalize_text("ｈａｔｅ") == "hate"
    assert normalize_text("𝐡𝐚𝐭𝐞 𝓱𝓪𝓽𝓮") == "hate hate"
    assert normalize_text("Ⓗⓐⓣⓔ") == "Hate"


@pytest.mark.parametrize("invisible", ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad", "\u202e", "\x07"])
def test_invisible_characters_between_letters_are_removed(invisible):
    assert strip_invisible(f"b{invisible}a{invisible}dword") == "badword"


def test_joiners_between_other_scripts_and_emoji_are_kept():
    persian = "می\u200cخواهم"
    family = "👨\u200d👩\u200d👧"
    assert strip_invisible(persian) == persian
    assert strip_invisible(family) == family


def test_combining_marks_on_ascii_letters_are_removed_but_accents_kept():
    assert strip_invisible("b\u0336a\u0336d\u0336") == "bad"
    assert normalize_text("cafe\u0301") == "café"  # NFKC composes the accent first, so it stays


def test_spaced_letters_joined_only_for_runs_of_three():
    assert rejoin_spaced("you are b a d w o r d x ok") == "you are badwordx ok"
    assert rejoin_spaced("a b") == "a b"
    assert rejoin_spaced("plan B or C") == "plan B or C"
    assert rejoin_spaced("I h a t e it") == "I hate it"
    assert rejoin_spaced("x y z.") == "xyz."


def test_spaced_letters_respect_word_gaps_chat_speak_and_apostrophes():
    assert rejoin_spaced("F a k e  N e w s") == "Fake  News"
    assert rejoin_spaced("u r a star, y r u late, i m a fan") == "u r a star, y r u late, i m a fan"
    assert rejoin_spaced("m o r o n") == "moron"
    assert rejoin_spaced("Trump's a a billionaire") == "Trump's a a billionaire"
    assert rejoin_spaced("t h e p@rk, g r e a t!") == "the p@rk, great!"


def test_spaced_letters_with_lookalikes_are_joined_then_folded():
    assert normalize_text("h а t e") == "hate"


def test_confusables_table_comes_from_unicode_data():
    table = confusable_table()
    assert table["а"] == "a" and table["о"] == "o" and table["ρ"] == "p" and table["Ι"] == "I"
    assert all(len(v) == 1 and v.isascii() for v in table.values())
    assert "μ" not in table  # micro: "5 μm" must stay


def test_confusables_folded_in_mixed_words_and_lookalike_words_in_latin_text():
    assert fold_confusables("bаdwоrd") == "badword"
    assert fold_confusables("the асе of spades") == "the ace of spades"  # all look-alikes, Latin text
    assert fold_confusables("ВОТ") == "ВОТ"  # a Cyrillic word in a Cyrillic text
    assert fold_confusables("a 5 μm filter and α particles") == "a 5 μm filter and α particles"


@pytest.mark.parametrize(("leet", "plain"), [
    ("b4dw0rd", "badword"), ("k1ll", "kill"), ("sh!t", "shit"), ("1d10t", "idiot"), ("h4t3", "hate"),
    ("B4DW0RDX", "BADWORDX"), ("n00bs!", "noobs!"), ("pr0c3ss", "process"), ("b@dw$rd", "badwsrd"),
])
def test_leet_folded_inside_words(leet, plain):
    assert fold_leet(leet) == plain


def test_symbols_before_capitals_or_doubled_are_punctuation():
    kept = "wow!!Great, hi@USER, Liberal!We, dogs!!!why, happy!hope, h1b visas"
    assert fold_leet(kept) == kept
    assert fold_leet("dumb@$$es, bull$hit, b!tch, st00p!d") == "dumbasses, bullshit, bitch, stoopid"


@pytest.mark.parametrize("kept", [
    "2024", "1,000", "3.14", "2nd", "10am", "mp3", "covid19", "4x4", "1v1", "C3PO", "R2D2", "W3C", "b2b",
    "x86x", "abc123def", "0c1fbd2", "i18n", "l10n", "k8s", "log4j", "@us3r", "#h4sht4g", "a@b.com",
    "https://ex4mple.com/p4th", "US$5bn", "wow!!", "Yahoo!",
])
def test_leet_leaves_numbers_codes_and_identifiers(kept):
    assert fold_leet(kept) == kept


def test_known_changes_to_ordinary_text_are_harmless():
    # Documented trade-offs: a stylised name reads as leet, NFKC spells out typographic forms.
    assert normalize_text("Ke$ha") == "Kesha"
    assert normalize_text("wait… ﬁne™") == "wait... fineTM"
    assert normalize_text("2½ cups, x², ①") == "2½ cups, x², ①"


def test_all_rules_together():
    text = "ｙｏｕ  are a b4dw\u200b0rd and h а t e, s e e 2024"
    assert normalize_text(text) == "you  are a badword and hate, see 2024"


def test_rejects_non_strings():
    with pytest.raises(TypeError, match="NoneType"):
        normalize_text(None)


def test_text_encoder_normalizes_when_configured_and_keys_its_cache_on_it(tiny_bert):
    from moderation.config import TextEncoderConfig
    from moderation.encoders.text import TextEncoder

    plain = TextEncoder(TextEncoderConfig(model=str(tiny_bert), precision="fp32"))
    normalizing = TextEncoder(TextEncoderConfig(model=str(tiny_bert), precision="fp32", normalize=True))
    evaded, clean = "a p0st ab\u200bout c4ts", "a post about cats"
    assert normalizing.windows([evaded]).input_ids == plain.windows([clean]).input_ids
    assert plain.windows([evaded]).input_ids != plain.windows([clean]).input_ids  # off by default
    assert normalizing.identity != plain.identity


@pytest.mark.parametrize("written, read", [
    ("a s.t.u.p.i.d idea", "a stupid idea"),
    ("i-d-i-o-t!", "idiot!"),
    ("(h_a_t_e)", "(hate)"),
    ("in the U.S.A. today", "in the USA. today"),
])
def test_letters_joined_by_punctuation_are_joined(written, read):
    assert normalize_text(written) == read


@pytest.mark.parametrize("kept", ["e.g. this", "at 9 a.m. sharp", "file a.b.cde", "www.a.b.c", "a.b-c d",
                                  "snake_case_name", "v1.2.3", "A-1-B"])
def test_punctuation_between_letters_is_left_where_it_is_not_one_spelled_out_word(kept):
    assert normalize_text(kept) == kept


@pytest.mark.parametrize("written, read", [
    ("you are stuuupid", "you are stupid"),
    ("NOOOO way", "NO way"),
    ("Heeeello there", "Hello there"),
    ("sooo cool", "so cool"),
])
def test_stretched_words_are_read_back(written, read):
    assert normalize_text(written) == read


@pytest.mark.parametrize("kept", ["Henry III", "zzz", "www.example.org", "mail aaa@example.org", "0xfff", "Mississippi"])
def test_stretching_rule_leaves_numerals_addresses_and_real_spellings(kept):
    assert normalize_text(kept) == kept
