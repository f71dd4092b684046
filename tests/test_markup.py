"""Platform markup out of posts (`moderation.encoders.markup`): what goes, what stays, and that the text encoder
and the lexical view read the same prepared text, keyed in the cache and kept in a saved lexical view."""

import numpy as np
import pytest

from moderation.encoders.markup import strip_platform_markup
from moderation.encoders.prepare import model_texts
from moderation.lexical import LexicalModel


@pytest.mark.parametrize("written, read", [
    # Each source's convention for a handle reads the same: gone.
    ("@USER @USER you are wrong", "you are wrong"),
    ("[USER] you are wrong", "you are wrong"),
    ("<user> you are wrong", "you are wrong"),
    ("RT @some_one: you are wrong", "you are wrong"),
    ("RT @a: RT @b: you are wrong", "you are wrong"),
    ("you are wrong @someone", "you are wrong"),
    # Links and their placeholders.
    ("look at this https://example.org/a?b=c now", "look at this now"),
    ("look at this www.example.org now", "look at this now"),
    ("look at this [URL]", "look at this"),
    ("so true URL", "so true"),
    ("open this URL", "open this URL"),  # after a determiner it may be the word: kept
    ("@USER #MAGA URL", "#MAGA"),
    # HTML entities some sources left encoded.
    ("salt &amp; pepper &#8220;quoted&#8221;", "salt & pepper \u201cquoted\u201d"),
    # A post of markup only is empty.
    ("@USER @USER URL", ""),
])
def test_markup_goes(written, read):
    assert strip_platform_markup(written) == read


@pytest.mark.parametrize("text", [
    "write to me at name@example.org",        # e-mail address, not a mention
    "paste the URL into the address bar",     # the ordinary word, after a determiner
    "is your URL correct?",
    "the url is fine and so is the RT-PCR test",
    "#MeToo is a movement",                   # hashtags are content
    "first line\nsecond line",                # line breaks stay
    "RTs and RT are words here",              # "RT" not before a mention
    "",
])
def test_ordinary_text_stays(text):
    assert strip_platform_markup(text) == text


def test_markup_comes_out_before_the_normaliser_reads_the_text():
    assert model_texts(["RT @h4ck3r: you are h4te", None], normalize=True, strip_markup=True) == ["you are hate", ""]
    assert model_texts(["@USER hi"], normalize=False, strip_markup=False) == ["@USER hi"]


def test_text_encoder_strips_when_configured_and_keys_its_cache_on_it(tiny_bert):
    from moderation.config import TextEncoderConfig
    from moderation.encoders.text import TextEncoder

    plain = TextEncoder(TextEncoderConfig(model=str(tiny_bert), precision="fp32"))
    stripping = TextEncoder(TextEncoderConfig(model=str(tiny_bert), precision="fp32", platform_markup="strip"))
    assert stripping.windows(["@USER a post about cats URL"]).input_ids == plain.windows(["a post about cats"]).input_ids
    assert plain.windows(["@USER a post"]).input_ids != plain.windows(["a post"]).input_ids  # kept by default
    assert stripping.identity != plain.identity


def test_lexical_view_strips_like_the_encoder_and_keeps_the_setting_when_saved(tmp_path):
    texts = ["@USER badword here", "@USER a quiet walk", "badword again", "lunch was nice"] * 5
    labels = np.array([[float("badword" in t)] for t in texts], np.float32)
    model = LexicalModel(normalize=False, strip_markup=True).fit(texts, labels, np.ones_like(labels, bool),
                                                                 np.array([True]))
    assert np.array_equal(model.logits(["@USER @USER a walk"]), model.logits(["a walk"]))
    model.save(tmp_path / "lexical.safetensors")
    loaded = LexicalModel.load(tmp_path / "lexical.safetensors")
    assert loaded.strip_markup
    assert np.array_equal(loaded.logits(["RT @x: badword"]), model.logits(["badword"]))
