"""Cheaper text-encoder inference that keeps quality: each variant's throughput and its PR-AUC change.

The text encoder is where the CPU time of a post goes (the head is a few small matmuls), so the variants
change only how it runs: fp32 batched as `TextEncoder.encode` batches (length bucketing with a token budget
per batch: the reference), fp32 in fixed-count length-sorted batches (no token budget), fp32 without length
bucketing, bf16 autocast (only where the CPU multiplies bf16 natively), int8 dynamic quantization of the
Linear layers, ONNX Runtime fp32 and ONNX Runtime int8 (dynamic).

Throughput: posts/s of the whole encode path (windows, tokenisation, padding, encoder) on a timing sample of
validation posts, in calls of as many posts as the service batches, variants interleaved round-robin,
fastest round kept. Quality: every variant embeds the
same larger validation sample, the shipped head scores it (zero-shot and prior correction included) and
per-class PR-AUC (average precision) is compared with the fp32 reference on the same rows. A variant wins
when it is at least 10% faster and no class moves by more than 0.002.
"""

from __future__ import annotations

import argparse
import copy
import logging
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from eval.benchmarks import common
from eval.metrics import per_class_metrics

log = logging.getLogger(__name__)

MAX_AP_CHANGE = 0.002
MIN_SPEEDUP = 1.10
Forward = Callable[[object, object], object]  # (input_ids, attention_mask) tensors -> (B, H) embeddings


def batches_for(lengths: list[int], batch_size: int, batching: str) -> list[np.ndarray]:
    """Window batches: 'budget' = `TextEncoder.encode`'s (sorted, token budget), 'fixed' = sorted, fixed count
    only (the encoder before the token budget), 'none' = input order, fixed count."""
    from moderation.encoders.text import CPU_TOKENS_PER_BATCH, length_batches

    if batching == "budget":
        return length_batches(lengths, batch_size, CPU_TOKENS_PER_BATCH)
    if batching == "fixed":
        return length_batches(lengths, batch_size)
    idx = np.arange(len(lengths))
    return [idx[s:s + batch_size] for s in range(0, len(idx), batch_size)]


def encode_with(encoder, texts: list[str], forward: Forward, batch_size: int, batching: str = "budget"):
    """`TextEncoder.encode` with a swappable forward and batching: (window embeddings (W, H) float32, owner (W,))."""
    import torch

    win = encoder.windows(texts)
    out = np.zeros((len(win.input_ids), encoder.dim), dtype=np.float32)
    with torch.inference_mode():
        for idx in batches_for([len(ids) for ids in win.input_ids], batch_size, batching):
            ids, mask = encoder.pad([win.input_ids[i] for i in idx])
            emb = forward(ids, mask)
            out[idx] = emb.float().numpy() if hasattr(emb, "float") else np.asarray(emb, np.float32)
    return out, win.owner


def export_onnx(encoder, path: Path) -> Path:
    """The encoder's pooled, normalised forward as ONNX with dynamic batch and length (TorchScript exporter)."""
    import torch

    class Pooled(torch.nn.Module):
        def __init__(self, enc):
            super().__init__()
            self.enc = enc

        def forward(self, input_ids, attention_mask):
            return self.enc.forward(input_ids, attention_mask)

    ids = torch.ones((2, 16), dtype=torch.long)
    dynamic = {"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"},
               "pooled": {0: "batch"}}
    torch.onnx.export(Pooled(encoder).eval(), (ids, torch.ones_like(ids)), str(path),
                      input_names=["input_ids", "attention_mask"], output_names=["pooled"], dynamic_axes=dynamic,
                      opset_version=17, dynamo=False)
    return path


def ort_forward(path: Path, threads: int) -> Forward:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return lambda ids, mask: session.run(None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})[0]


def ort_int8(src: Path, dst: Path) -> Path:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # Shape inference cannot type every MatMul output of the exported graph; they are all float.
    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8,
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    return dst


def build_variants(encoder, tmp: Path, threads: int, bf16: bool) -> tuple[dict[str, tuple[Forward, str]], dict[str, str]]:
    """{name: (forward, batching)} of every variant that builds here, and {name: why not} for the others."""
    import torch

    variants = {"fp32 (reference)": (encoder.forward, "budget"),
                "fp32, fixed-count batches (no token budget)": (encoder.forward, "fixed"),
                "fp32, no length bucketing": (encoder.forward, "none")}
    missing = {}
    if bf16:
        def bf16_forward(ids, mask):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return encoder.forward(ids, mask)
        variants["bf16 autocast"] = (bf16_forward, "budget")
    else:
        missing["bf16 autocast"] = "this CPU has no native bf16"
    quantized = copy.deepcopy(encoder)
    quantized.model = torch.ao.quantization.quantize_dynamic(quantized.model, {torch.nn.Linear}, dtype=torch.qint8)
    variants["int8 dynamic (torch, Linear layers)"] = (quantized.forward, "budget")
    try:
        path = export_onnx(encoder, tmp / "text.onnx")
        variants["ONNX Runtime fp32"] = (ort_forward(path, threads), "budget")
        variants["ONNX Runtime int8 dynamic"] = (ort_forward(ort_int8(path, tmp / "text-int8.onnx"), threads), "budget")
    except Exception as exc:  # an exporter that cannot handle the model is a finding, not a crash
        log.warning("ONNX export failed: %s", exc)
        missing["ONNX Runtime"] = f"export failed: {str(exc).splitlines()[0][:200]}"
    return variants, missing


def head_scores(model, emb: np.ndarray, owner: np.ndarray, texts: list[str], num_classes: int,
                lexical_model=None) -> np.ndarray:
    """Fused probabilities (N, C) of the shipped head on these window embeddings (and its lexical view's logits of
    the texts, which no encoder variant changes)."""
    from moderation.features import Features, offsets_from_owner
    from moderation.scoring import run_model

    n = len(texts)
    feats = Features(windows=emb, offsets=offsets_from_owner(owner, n), image=None,
                     has_text=np.array([bool(t) for t in texts]), has_image=np.zeros(n, bool),
                     labels=np.zeros((n, num_classes), np.float32), label_mask=np.zeros((n, num_classes), bool))
    if lexical_model is not None:
        feats = feats.with_lexical(lexical_model, texts)
    return run_model(model, feats).fused


def time_variants(encoder, variants: dict, texts: list[str], batch_size: int, call_posts: int,
                  rounds: int) -> dict[str, float]:
    """Fastest posts/s of each variant over `rounds` interleaved passes on the same texts, encoded in calls of
    `call_posts` posts, as the service calls the encoder (one call per served batch)."""
    best: dict[str, float] = {}
    for forward, batching in variants.values():  # warm-up pass each
        encode_with(encoder, texts[:64], forward, batch_size, batching)
    for _ in range(rounds):
        for name, (forward, batching) in variants.items():
            start = time.perf_counter()
            for s in range(0, len(texts), call_posts):
                encode_with(encoder, texts[s:s + call_posts], forward, batch_size, batching)
            best[name] = max(best.get(name, 0.0), len(texts) / (time.perf_counter() - start))
    return best


def measure(args) -> dict:
    import torch

    from moderation import runfiles
    from moderation.encoders.text import run_text_encoder
    from moderation.lexical import load_for_run
    from moderation.model import ModerationModel

    from eval.benchmarks.compute_floor import bf16_supported

    config, splits = common.load_splits()
    rows = common.sample_split(splits["validation"], args.posts, args.seed)
    texts = [t or "" for t in rows["text"]]
    labels, mask = np.asarray(rows["labels"], np.float32), np.asarray(rows["label_mask"], bool)
    threads = torch.get_num_threads()
    run_dir = runfiles.resolve_run_dir(None)
    # The run's own encoder settings, with its adapter if it has one: what its head was trained on.
    encoder = run_text_encoder(runfiles.read_config(run_dir).text_encoder, run_dir / runfiles.TEXT_ENCODER)
    model, meta = ModerationModel.load(run_dir)
    lexical = load_for_run(run_dir, meta)
    names = model.categories
    bs = config.text_encoder.batch_size
    with tempfile.TemporaryDirectory(prefix="bench-variants-") as tmp:
        variants, missing = build_variants(encoder, Path(tmp), threads, bf16_supported())
        speed = time_variants(encoder, variants, texts[:args.timing_posts], bs, args.call_posts, args.rounds)
        quality = {}
        for name, (forward, batching) in variants.items():
            emb, owner = encode_with(encoder, texts, forward, bs, batching)
            scores = head_scores(model, emb, owner, texts, len(names), lexical)
            quality[name] = per_class_metrics(labels, mask, scores, names)
            log.info("%s: %.1f posts/s", name, speed[name])
    return {"speed": speed, "quality": quality, "missing": missing, "names": names, "threads": threads,
            "batch_size": bs, "posts": len(texts)}


def ap_changes(quality: dict, reference: str, names: list[str]) -> dict[str, dict[str, float | None]]:
    """{variant: {class: PR-AUC minus the reference's}}; None where the class has no PR-AUC on the sample."""
    ref = quality[reference]
    out = {}
    for name, metrics in quality.items():
        out[name] = {c: None if ref[c]["average_precision"] is None or metrics[c]["average_precision"] is None
                     else metrics[c]["average_precision"] - ref[c]["average_precision"] for c in names}
    return out


def winners(speed: dict[str, float], changes: dict, reference: str) -> list[str]:
    """Variants at least MIN_SPEEDUP x the reference's speed with every class within MAX_AP_CHANGE, fastest first."""
    ok = [name for name in speed if name != reference and speed[name] >= MIN_SPEEDUP * speed[reference]
          and all(abs(d) <= MAX_AP_CHANGE for d in changes[name].values() if d is not None)]
    return sorted(ok, key=lambda name: -speed[name])


def report(m: dict, args) -> str:
    ref = "fp32 (reference)"
    names, speed = m["names"], m["speed"]
    changes = ap_changes(m["quality"], ref, names)
    rows = []
    for name in speed:
        worst = max((abs(d) for d in changes[name].values() if d is not None), default=0.0)
        good = name == ref or name in winners(speed, changes, ref)
        rows.append([name, f"{speed[name]:.1f}", f"{speed[name] / speed[ref]:.2f}x", f"{worst:.4f}",
                     "reference" if name == ref else ("**wins**" if good else "no")])
    rows += [[name, None, None, None, f"not run: {why}"] for name, why in m["missing"].items()]
    per_class = []
    for c in names:
        q = m["quality"][ref][c]
        if q["average_precision"] is None:
            continue
        per_class.append([c, f"{q['support']} ({q['positives']})", common.fmt(q["average_precision"]),
                          *[f"{changes[name][c]:+.4f}" for name in speed if name != ref]])
    win = winners(speed, changes, ref)
    lines = [f"Text encoder ({m['threads']} torch threads, batch {m['batch_size']}). Speed: {args.timing_posts} "
             f"validation posts through the whole encode path in calls of {args.call_posts} posts (as the service "
             f"calls it), {args.rounds} interleaved rounds, fastest kept. Quality: "
             f"{m['posts']} validation posts (seed {args.seed}) scored by the shipped head; PR-AUC (average precision) "
             f"change against fp32 on the same rows. A variant wins at >= {MIN_SPEEDUP:.2f}x with every class within "
             f"{MAX_AP_CHANGE}.", "",
             common.md_table(["variant", "posts/s", "speed-up", "largest per-class PR-AUC change", "wins"], rows), "",
             common.md_table(["class", "support (positives)", "fp32 PR-AUC",
                              *[f"Δ {name}" for name in speed if name != ref]], per_class), "",
             f"Winners: {', '.join(win) if win else 'none'}.", "", adoption_note(win, speed)]
    return "\n".join(lines)


ADOPTED = "bf16 autocast"  # what `text_encoder.precision: auto` turns on (moderation/encoders/text.py)


def adoption_note(win: list[str], speed: dict[str, float]) -> str:
    """What the code's defaults are, and whether this run's figures still support them."""
    from moderation.encoders.text import cpu_has_native_bf16

    ref, fixed = "fp32 (reference)", "fp32, fixed-count batches (no token budget)"
    note = ("Defaults in the code: `TextEncoder.encode` batches windows by length with a token budget per batch "
            f"(here {speed[ref] / speed[fixed]:.2f}x the speed of fixed-count batches) and, with "
            "`text_encoder.precision: auto`, runs under bf16 autocast on CPUs that multiply bf16 natively (this one: "
            f"{'yes' if cpu_has_native_bf16() else 'no'}), for training, prediction and serving alike; `fp32` or "
            "`bf16` force one.")
    if ADOPTED in win:
        note += f" This run supports it: {ADOPTED} wins."
    else:
        note += f" **This run does not support it: {ADOPTED} did not win here; revisit the default.**"
    others = [w for w in win if w != ADOPTED]
    if others:
        why = "one inference path is kept in the encoder"
        if any("ONNX" in w for w in others):
            why += "; ONNX Runtime would add an export step and a second runtime to every model load"
        note += f" Also winning, not adopted: {', '.join(others)} ({why})."
    return note


def run(args) -> str:
    m = measure(args)
    return common.publish("inference-variants", "Cheaper inference: text-encoder variants, speed and PR-AUC",
                          report(m, args), args)


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--posts", type=int, default=3000, help="validation posts for the PR-AUC comparison")
    parser.add_argument("--timing-posts", type=int, default=500, help="of those, posts in each timed pass")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds")
    parser.add_argument("--call-posts", type=int, default=32,
                        help="posts per encode call in the timed passes (the service's max_batch_size)")
    common.add_common_options(parser)
    return parser

