"""Tiny random Hugging Face models for tests, built in well under a second and saved to a folder, so the
real `from_pretrained(folder)` code path runs offline. No weights are committed: tests build them."""

from __future__ import annotations

from pathlib import Path

import torch

# Every tiny model is built from this seed: its random weights, and so what the tests' tiny training runs learn,
# are the same on every run. An unseeded 32-wide BERT made the tests' score thresholds flaky: over six seeds its
# marker-word mean AP ranged 0.67-0.90; 64 wide it ranged 0.99-1.00 (the tests then check learning, not luck).
SEED = 1234
BERT_HIDDEN = 64  # the tiny text model's embedding width

# A closed synthetic vocabulary: tests write texts from these words only (no real abusive text).
WORDS = (
    "the a post about cats dogs weather sports music food travel city park game movie book "
    "calm happy friendly neutral ordinary report update hello thanks please today tomorrow "
    "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november "
    "oscar papa quebec romeo sierra tango uniform victor whiskey xray yankee zulu "
    "harmword threatword slurword insultword lewdword sadword"
).split()


def build_tiny_bert(folder: Path, hidden_size: int = BERT_HIDDEN) -> Path:
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    tokenizer = BertTokenizerFast(vocab={token: i for i, token in enumerate(vocab)}, do_lower_case=True)
    config = BertConfig(
        vocab_size=len(vocab), hidden_size=hidden_size, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=hidden_size * 2, max_position_embeddings=64,
    )
    with torch.random.fork_rng():
        torch.manual_seed(SEED)
        model = BertModel(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def build_tiny_vit(folder: Path, image_size: int = 32) -> Path:
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    config = ViTConfig(
        image_size=image_size, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64,
    )
    with torch.random.fork_rng():
        torch.manual_seed(SEED)
        model = ViTModel(config)
    model.save_pretrained(folder)
    ViTImageProcessor(size={"height": image_size, "width": image_size}).save_pretrained(folder)
    return folder


def build_tiny_clip_vision(folder: Path, image_size: int = 32) -> Path:
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

    config = CLIPVisionConfig(
        image_size=image_size, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, projection_dim=16,
    )
    with torch.random.fork_rng():
        torch.manual_seed(SEED)
        model = CLIPVisionModel(config)
    model.save_pretrained(folder)
    CLIPImageProcessor(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
    ).save_pretrained(folder)
    return folder


if __name__ == "__main__":
    import sys

    out = Path(sys.argv[1] if len(sys.argv) > 1 else "tiny-models")
    for name, build in [("bert", build_tiny_bert), ("vit", build_tiny_vit), ("clip_vision", build_tiny_clip_vision)]:
        print(build(out / name))
