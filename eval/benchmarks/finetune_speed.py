"""Fine-tuning speed: training texts per second through the text encoder's forward and backward pass.

What `text_encoder.finetune: lora` (or `full`) costs per epoch on this machine, three ways on the same texts
from the default config's training split, in one process, alternating so that the shared machine's noise
falls on all three alike:

- *random batches, fp32*: `--batch-size` texts in random order, padded to the longest (before);
- *length-bucketed, fp32*: `moderation.train.bucketed_batches` (at most `--batch-size` texts and
  `train.finetune_tokens_per_batch` padded tokens per batch);
- *length-bucketed, bf16 autocast*: as training runs it where the CPU multiplies bf16 natively.

Each step is `moderation.train.encode_batch` (the fine-tuning forward pass training uses), a surrogate loss on
the embeddings, backward and an AdamW step on the trainable weights; the fusion head's cost is left out (it
is a few small matrices). Texts/s is the fastest of `--rounds` passes.
"""

from __future__ import annotations

import argparse
import logging
import time

import numpy as np

from eval.benchmarks import common

log = logging.getLogger(__name__)


def measure(args) -> dict:
    import torch

    from moderation.train import bucketed_batches, build_encoders, encode_batch, prepare_finetuning, windows_per_text

    config, splits = common.load_splits(args.config)
    config = config.model_copy(update={"text_encoder": config.text_encoder.model_copy(update={"finetune": args.finetune})})
    train = common.sample_split(splits["train"].filter(lambda r: bool(r["text"])), 4 * args.texts, args.seed)
    encoder, _ = build_encoders(config)
    prepare_finetuning(encoder, config)
    torch.manual_seed(args.seed)
    optimiser = torch.optim.AdamW([p for p in encoder.parameters() if p.requires_grad], lr=1e-5)
    # Texts of one window only: a random batch of 32 long texts can hold 256 windows of 256 tokens, whose fp32
    # activations and gradients exceeded 24 GB here (the token budget bounds bucketed batches).
    one_window = [(t, w) for t, w in zip(train["text"], windows_per_text(encoder, train["text"])) if len(w) == 1]
    texts, windows = [t for t, _ in one_window[:args.texts]], [w for _, w in one_window[:args.texts]]
    size, budget = args.batch_size, config.train.finetune_tokens_per_batch
    shuffled = np.random.default_rng(args.seed).permutation(len(texts))
    ways = {
        "random batches, fp32": ([shuffled[i:i + size] for i in range(0, len(texts), size)], False),
        "length-bucketed, fp32": (bucketed_batches([[len(w) for w in ws] for ws in windows], size, budget,
                                                   np.random.default_rng(args.seed)), False),
    }
    if encoder.uses_bf16("cpu"):
        ways["length-bucketed, bf16 autocast"] = (ways["length-bucketed, fp32"][0], True)
    encoder.train()
    seconds: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(args.rounds):
        for name, (batches, bf16) in ways.items():
            started = time.perf_counter()
            for idx in batches:
                embedded, _ = encode_batch(encoder, windows, idx, "cpu", bf16=bf16)
                loss = embedded.pow(2).mean()
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
            seconds[name].append(time.perf_counter() - started)
            log.info("%s: %.1f texts/s", name, len(texts) / seconds[name][-1])
    # Tokens a pass pushes through the encoder, padding included: windows per batch x its longest window.
    padded = {name: int(sum(sum(len(windows[i]) for i in b) * max(len(w) for i in b for w in windows[i])
                            for b in batches)) for name, (batches, _) in ways.items()}
    return {"texts": len(texts), "finetune": args.finetune, "model": config.text_encoder.model, "batch_size": size,
            "tokens_per_batch": budget, "threads": torch.get_num_threads(),
            "rows": [{"way": name, "texts_per_second": len(texts) / min(s), "padded_tokens": padded[name],
                      "batches": len(ways[name][0])} for name, s in seconds.items()]}


def report(m: dict) -> str:
    base = m["rows"][0]["texts_per_second"]
    rows = [[r["way"], r["batches"], f"{r['padded_tokens']:,}", f"{r['texts_per_second']:.1f}",
             f"{r['texts_per_second'] / base:.2f}x"] for r in m["rows"]]
    return "\n".join([
        f"`text_encoder.finetune: {m['finetune']}` on `{m['model']}`: {m['texts']} training texts of the default config "
        "(seeded sample of those that fit one window: random batches of long texts ran out of 24 GB), forward + "
        f"backward + AdamW step per batch, {m['threads']} torch threads; at most "
        f"{m['batch_size']} texts and, bucketed, {m['tokens_per_batch']} padded tokens per batch. Fastest of the "
        "rounds; the three ways alternate within each round.", "",
        common.md_table(["batches", "count", "padded tokens", "texts/s", "vs random fp32"], rows), ""])


def run(args) -> str:
    return common.publish("finetune-speed", "Fine-tuning speed: length bucketing and bf16 on the CPU",
                          report(measure(args)), args)


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default=str(common.DEFAULT_CONFIG), help="whose training texts and settings")
    parser.add_argument("--texts", type=int, default=512, help="training texts per pass (seeded sample)")
    parser.add_argument("--rounds", type=int, default=2, help="passes per way; the fastest counts")
    parser.add_argument("--finetune", choices=["lora", "full"], default="lora")
    parser.add_argument("--batch-size", type=int, default=32,
                        help="texts per batch (train.batch_size of a fine-tuning run; the config's is the head's)")
    common.add_common_options(parser)
    return parser
