"""Pretrained encoders: text (any transformers AutoModel) and image (transformers vision, EfficientNet-Lite0, open_nsfw)."""
