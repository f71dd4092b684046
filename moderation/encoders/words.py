"""English word counts (the `wordsegment` package's unigrams, Apache-2.0), loaded once per process.

Used where a rule has to tell a word from a non-word: OCR tidying (splitting words that outlined capitals ran
together) and the normaliser (reading back stretched words: "stuuupid" -> "stupid").
"""

from __future__ import annotations


def english_words():
    """The `wordsegment` module with its unigram and bigram counts loaded (about 0.25 s, once)."""
    import wordsegment

    if not wordsegment.UNIGRAMS:
        wordsegment.load()
    return wordsegment
