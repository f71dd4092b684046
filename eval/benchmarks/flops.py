"""FLOP counts of the encoders: what one post costs, so achieved throughput can be set against a matmul rate.

FLOPs count a multiply-add as 2. The text encoder is counted analytically (BERT-style encoder, per window at
its real token length), because torch's `FlopCounterMode` does not count the CPU flash-attention kernel
BERT's SDPA path uses; the analytic count is checked against `FlopCounterMode` on the matmuls it does see
(tests/test_bench.py and the compute-floor report). The image encoder has one input size, so its count is
simply measured with `FlopCounterMode` on one image.
"""

from __future__ import annotations

import numpy as np


def bert_flops(seq_len: int, num_layers: int, hidden: int, intermediate: int, pooler: bool = True) -> int:
    """FLOPs of one forward of a BERT-style encoder over one sequence of `seq_len` tokens.

    Per layer and token: Q, K, V and output projections 4 x 2·H², feed-forward 2 x 2·H·I; per layer, the
    attention scores QKᵀ and the weighted sum AV, 2 x 2·T²·H. The pooler (a dense H x H on [CLS]) adds 2·H².
    Embedding lookups, softmax, layer norm and GELU are not multiply-adds and are left out.

    >>> bert_flops(10, num_layers=2, hidden=32, intermediate=64, pooler=False)
    353280
    """
    t, h = int(seq_len), int(hidden)
    per_layer = t * (8 * h * h + 4 * h * int(intermediate)) + 4 * t * t * h
    return int(num_layers) * per_layer + (2 * h * h if pooler else 0)


def bert_shape(model) -> dict:
    """The numbers `bert_flops` needs, read from a transformers BERT-like model."""
    c = model.config
    return {"num_layers": c.num_hidden_layers, "hidden": c.hidden_size, "intermediate": c.intermediate_size,
            "pooler": getattr(model, "pooler", None) is not None}


def window_flops(lengths, shape: dict) -> np.ndarray:
    """(W,) FLOPs of each window, from its real token length (no padding)."""
    return np.array([bert_flops(int(n), **shape) for n in lengths], dtype=np.float64)


def padded_flops(batch_lengths, shape: dict) -> float:
    """FLOPs the encoder executes on one padded batch: every window as long as the longest."""
    batch_lengths = list(batch_lengths)
    return float(len(batch_lengths) * bert_flops(max(batch_lengths), **shape))


def flops_per_post(lengths, owner, num_posts: int, shape: dict) -> np.ndarray:
    """(N,) FLOPs of each post: the sum over its windows."""
    return np.bincount(np.asarray(owner, np.int64), weights=window_flops(lengths, shape), minlength=num_posts)


def counted_flops(module, *inputs, **kwargs) -> int:
    """FLOPs torch's FlopCounterMode sees in one forward (matmuls and convolutions; not CPU flash attention)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        module(*inputs, **kwargs)
    return int(counter.get_total_flops())


def image_flops(encoder, image_size: int) -> int:
    """FLOPs of one image through an image encoder's `forward` at its input size."""
    import torch

    pixels = torch.zeros(1, 3, image_size, image_size)
    return counted_flops(encoder.forward, pixels)
