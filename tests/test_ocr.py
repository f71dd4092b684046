"""Reading the text in pictures (OCR) and scoring it: the reader, the featurizer's OCR path and its cache, and
the text-head image branch (a picture is scored by what it says; caption and picture evidence combine)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw, ImageFont

from moderation.config import TextEncoderConfig
from moderation.features import featurize
from moderation.model import NO_EVIDENCE, ModerationModel, combine_evidence
from moderation.scoring import run_model
from tests.tiny_models import BERT_HIDDEN

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"  # Debian's fonts-dejavu-core


def render(text: str, size=(360, 120), background=(40, 90, 160)) -> Image.Image:
    """A meme-style picture: white outlined capitals on a coloured background."""
    image = Image.new("RGB", size, background)
    try:
        font = ImageFont.truetype(FONT, 30)
    except OSError:
        font = ImageFont.load_default(size=30)
    ImageDraw.Draw(image).text((12, 40), text, font=font, fill="white", stroke_width=2, stroke_fill="black")
    return image


def png_bytes(colour=(200, 200, 200)) -> bytes:
    import io

    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), colour).save(buffer, format="PNG")
    return buffer.getvalue()


PNG, OTHER_PNG = png_bytes(), png_bytes((10, 10, 10))


class FixedReader:
    """Stands in for OCR where the test is about what happens to the text, not reading it."""

    identity = "fixed-reader"

    def __init__(self, text: str):
        self.text, self.calls = text, 0

    def read_one(self, image) -> str:
        self.calls += 1
        return self.text


@pytest.fixture(scope="module")
def text_encoder(tiny_bert):
    from moderation.encoders.text import TextEncoder

    return TextEncoder(TextEncoderConfig(model=str(tiny_bert), max_length=16, window_stride=4, precision="fp32"))


def test_the_reader_reads_rendered_words():
    from moderation.encoders.ocr import OcrReader

    text = OcrReader().read_one(render("HAVE A LOVELY DAY"))
    assert text.replace(" ", "").upper() == "HAVEALOVELYDAY", text


def test_the_reader_splits_words_rendered_without_spaces():
    from moderation.encoders.ocr import OcrReader

    assert OcrReader().read_one(render("HAVEALOVELYDAY")).lower() == "have a lovely day"


def test_tidy_drops_web_addresses_and_splits_only_long_unknown_runs():
    from moderation.encoders.ocr import tidy

    assert tidy("GOOD MORNING www.memes.tv/x MAKEAMEME.ORG") == "GOOD MORNING"
    assert tidy("CONGRATULATIONS NOTYOU") == "CONGRATULATIONS NOTYOU"  # a known word; a run too short to split
    assert tidy("WHENTHEBUSISLATE again") == "when the bus is late again"
    assert tidy("") == ""


def test_a_picture_without_writing_reads_as_empty():
    from moderation.encoders.ocr import OcrReader

    assert OcrReader().read_one(Image.new("RGB", (64, 64), (200, 30, 30))) == ""


def test_featurize_embeds_the_picture_text_and_caches_it_by_content(text_encoder, tmp_path):
    reader = FixedReader("cats dogs weather")
    png = tmp_path / "a.png"
    render("x").save(png)
    rows = {"text": ["hello", None, "only text"], "image": [str(png), png.read_bytes(), None]}
    f = featurize(rows, 6, text_encoder, None, cache_dir=tmp_path / "cache", ocr_reader=reader)
    assert f.ocr_text == ["cats dogs weather", "cats dogs weather", ""]
    assert f.has_image.tolist() == [True, True, False] and f.has_ocr.tolist() == [True, True, False]
    assert f.ocr_windows.shape[1] == text_encoder.dim
    again = featurize(rows, 6, text_encoder, None, cache_dir=tmp_path / "cache", ocr_reader=reader)
    assert reader.calls == 2 and again.ocr_text == f.ocr_text  # second pass read from the cache
    regrouped = {"text": ["only text", "hello"], "image": [None, str(png)]}  # as another fold would split them
    assert featurize(regrouped, 6, text_encoder, None, cache_dir=tmp_path / "cache",
                     ocr_reader=reader).ocr_text == ["", "cats dogs weather"]
    assert reader.calls == 2  # cached per picture, not per list of pictures
    b = f.batch(np.array([2, 0]))
    assert b["has_ocr"].tolist() == [False, True] and int(b["ocr_owner"].max()) == 1


def test_ocr_as_image_features_appends_the_mean_text_embedding(text_encoder):
    f = featurize({"text": ["a", None], "image": [None, PNG]}, 6, text_encoder, None,
                  ocr_reader=FixedReader("cats"), ocr_as_image_features=True)
    assert f.image.shape == (2, text_encoder.dim)
    assert not f.image[0].any() and f.image[1].any()


def text_head_model(dim: int, rule: str = "max", nsfw_class: int | None = None) -> ModerationModel:
    torch.manual_seed(0)
    model = ModerationModel(["toxicity", "hate", "sexual"], "late", dim, 1024, hidden_dim=8,
                            image_branch="text_head", caption_picture_rule=rule)
    model.nsfw_class = nsfw_class
    return model.eval()


def test_a_picture_scores_like_a_caption_that_says_the_same(text_encoder):
    model = text_head_model(text_encoder.dim)
    words = "slurword cats weather"
    caption = featurize({"text": [words], "image": [None]}, 3, text_encoder, None)
    picture = featurize({"text": [None], "image": [PNG]}, 3, text_encoder, None, ocr_reader=FixedReader(words))
    assert model.meta["image_dim"] == 0  # the head never sees image features in this branch
    np.testing.assert_allclose(run_model(model, picture).image, run_model(model, caption).text, rtol=1e-6)
    np.testing.assert_allclose(run_model(model, picture).fused, run_model(model, caption).fused, rtol=1e-6)


def test_a_picture_with_nothing_readable_is_no_evidence_except_for_nsfw(text_encoder):
    model = text_head_model(text_encoder.dim, nsfw_class=2)
    f = featurize({"text": [None, None], "image": [PNG, OTHER_PNG]}, 3, text_encoder, None, ocr_reader=FixedReader(""))
    f.extras["nsfw"] = np.array([0.97, 0.01], np.float32)
    scores = run_model(model, f)
    assert scores.image[:, :2].max() < 1e-6  # toxicity, hate: nothing read, nothing scored
    assert scores.image[0, 2] == pytest.approx(0.97, abs=1e-4) and scores.image[1, 2] < 0.02


@pytest.mark.parametrize("rule", ["max", "noisy_or"])
def test_caption_and_picture_combine_by_the_rule_and_never_lower_either(text_encoder, rule):
    model = text_head_model(text_encoder.dim, rule)
    f = featurize({"text": ["cats weather music"], "image": [PNG]}, 3, text_encoder, None,
                  ocr_reader=FixedReader("slurword threatword lewdword"))
    s = run_model(model, f)
    assert (s.fused >= np.maximum(s.text, s.image) - 1e-6).all()
    expected = np.maximum(s.text, s.image) if rule == "max" else 1 - (1 - s.text) * (1 - s.image)
    np.testing.assert_allclose(s.fused, expected, rtol=1e-5)
    assert s.driving_modality(0) == {c: "text" if s.text[0, j] >= s.image[0, j] else "image"
                                     for j, c in enumerate(s.categories)}


def test_noisy_or_is_finite_at_extreme_logits():
    big = torch.tensor([40.0, -40.0, NO_EVIDENCE])
    out = combine_evidence(big, torch.tensor([NO_EVIDENCE] * 3), "noisy_or")
    # P(either) of two tiny probabilities is about their sum: never below the larger, still tiny.
    assert torch.isfinite(out).all() and out[0] > 39 and -20 <= out[1] < -19.9 and -20 < out[2] < -19


class ColourReader:
    """Fake OCR for training tests: a picture's colour stands for the words written in it."""

    identity = "colour-reader"
    WORDS = {(220, 20, 20): "lewdword park", (20, 20, 220): "cats weather", (20, 180, 20): "dogs music",
             (200, 200, 200): ""}

    def read_one(self, image) -> str:
        return self.WORDS.get(image.getpixel((0, 0)), "")


def train_with_pictures(tmp_path, tiny_bert, monkeypatch, head: dict):
    """A tiny run whose pictures are read by the fake reader; returns (run dir, config)."""
    from eval.evaluate import evaluate_run
    from moderation.config import config_from_dict
    from moderation.training import train_run
    from tests.synthetic import tiny_config, write_dataset
    from tests.test_train import mean_ap

    monkeypatch.setattr("moderation.encoders.ocr.OcrReader", ColourReader)
    data = write_dataset(tmp_path / "d.jsonl", n=200, seed=4, images=True)
    tree = tiny_config(data, tiny_bert, tmp_path / "run", image_encoder={"kind": "none", "ocr": True},
                       head=head, train={"epochs": 12})
    config = config_from_dict(tree)
    return train_run(config, compute_metrics=mean_ap, out_dir=tmp_path / "run", progress=False,
                     evaluate=evaluate_run), config


def test_a_trained_image_branch_learns_from_the_text_in_pictures(tmp_path, tiny_bert, monkeypatch):
    from moderation import Moderator, runfiles

    run, _ = train_with_pictures(tmp_path, tiny_bert, monkeypatch, {"fusion": "late", "hidden_dim": 16})
    predictions = runfiles.read_predictions(run)
    assert Moderator(run).meta["image_dim"] == BERT_HIDDEN  # the mean OCR embedding is the image input (no pixel encoder)
    m = Moderator(run)
    red, blue = Image.new("RGB", (40, 40), (220, 20, 20)), Image.new("RGB", (40, 40), (20, 20, 220))
    scores = m.score([red, blue])
    assert scores[0]["ocr_text"] == "lewdword park" and scores[0]["text_scores"] is None
    assert scores[0]["image_scores"]["sexual"] > scores[1]["image_scores"]["sexual"]
    assert predictions is not None


def test_a_text_head_model_scores_pictures_without_image_training(tmp_path, tiny_bert, monkeypatch):
    from moderation import Moderator

    run, _ = train_with_pictures(tmp_path, tiny_bert, monkeypatch,
                                 {"fusion": "late", "image_branch": "text_head", "caption_picture_rule": "noisy_or"})
    m = Moderator(run)
    assert m.meta["image_dim"] == 0 and m.meta["image_branch"] == "text_head" and "image" in m.modalities
    picture = m.score(Image.new("RGB", (40, 40), (220, 20, 20)))
    caption = m.score("lewdword park")
    assert picture["image_scores"] == pytest.approx(caption["text_scores"], abs=1e-6)
    both = m.score({"text": "cats weather", "image": Image.new("RGB", (40, 40), (220, 20, 20))})
    for c, p in both["scores"].items():
        t, i = both["text_scores"][c], both["image_scores"][c]
        assert p == pytest.approx(1 - (1 - t) * (1 - i), abs=1e-5)


def test_a_text_head_model_with_nsfw_trains_on_posts_with_pictures(text_encoder):
    """Posts with pictures in the training data backpropagate through the picture evidence (no in-place ops)."""
    model = text_head_model(text_encoder.dim, "noisy_or", nsfw_class=2).train()
    f = featurize({"text": ["cats", "slurword park"], "image": [PNG, OTHER_PNG]}, 3, text_encoder, None,
                  ocr_reader=FixedReader("threatword"))
    f.extras["nsfw"] = np.array([0.9, 0.1], np.float32)
    logits = model(**f.batch(np.arange(2)))
    loss = torch.nn.functional.binary_cross_entropy_with_logits(logits["fused"], torch.ones_like(logits["fused"]))
    loss.backward()
    assert all(p.grad is not None for p in model.head.text_scorer.parameters())
