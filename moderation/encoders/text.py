"""The text encoder: any transformers AutoModel, pooled to one vector per window of text.

Long texts are not cut at the model's limit: each text is tokenised into overlapping windows
(`max_length` tokens, `window_stride` shared), every window is embedded, and the fusion head scores each
window and keeps the maximum per post, so harm late in a long post still counts. `encode` returns the flat
window embeddings plus, for each window, the index of the text it came from.

`encode` runs the encoder under bf16 autocast when `text_encoder.precision` is `bf16`, or `auto` (the default)
on a CPU that multiplies bf16 natively: there it is 1.8x faster than fp32 and moves no class's validation
PR-AUC by more than 0.002 (`moderation bench variants`). `auto` keeps GPUs in fp32 until bf16 is measured on
one. `forward`, the fine-tuning path, always runs in the caller's precision.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from moderation.config import TextEncoderConfig
from moderation.encoders.loading import hub_hint, quiet_loading
from moderation.encoders.markup import VERSION as markup_version
from moderation.encoders.normalize import identity as normalizer_identity
from moderation.encoders.normalize import prepare as prepare_normalizer
from moderation.encoders.packaged import MINILM, resolve_model_path
from moderation.encoders.prepare import model_texts

log = logging.getLogger(__name__)

# On the CPU an encoder batch holds at most this many padded tokens: short windows still go up to
# text_encoder.batch_size at a time, long ones a few at a time. Measured on 2 cores (`moderation bench variants`,
# `bench compute`): ~512-token batches run faster per token than 4k-token ones, whose activations leave the
# caches, and one long post no longer pads a whole served batch to 256 tokens. GPUs keep full batches.
CPU_TOKENS_PER_BATCH = 512


def cpu_has_native_bf16() -> bool:
    """True where the CPU multiplies bf16 in hardware (AVX512-BF16 or AMX); elsewhere bf16 is emulated and slow."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def length_batches(lengths, batch_size: int, max_tokens: int | None = None, windows=None) -> list[np.ndarray]:
    """Length bucketing: item indices sorted by length, cut into batches of at most `batch_size` items and,
    with `max_tokens`, at most that many padded tokens (an item longer than that goes alone). An item is a
    window, or with `windows` (how many windows each item has, `lengths` being its longest) a whole text.

    >>> [b.tolist() for b in length_batches([3, 250, 5, 4], batch_size=4, max_tokens=256)]
    [[0, 3, 2], [1]]
    >>> [b.tolist() for b in length_batches([3, 250, 5, 4], batch_size=2)]
    [[0, 3], [2, 1]]
    >>> [b.tolist() for b in length_batches([3, 250, 5, 4], batch_size=4, max_tokens=16, windows=[1, 1, 2, 2])]
    [[0, 3], [2], [1]]
    """
    lengths = np.asarray(lengths)
    counts = np.ones(len(lengths), dtype=np.int64) if windows is None else np.asarray(windows)
    budget = max_tokens or np.inf
    batches, current, padded_rows = [], [], 0
    for i in np.argsort(lengths, kind="stable"):
        # Ascending order: the item being added is the longest, so it sets the padded length.
        if current and (len(current) == batch_size or (padded_rows + int(counts[i])) * int(lengths[i]) > budget):
            batches.append(np.asarray(current))
            current, padded_rows = [], 0
        current.append(int(i))
        padded_rows += int(counts[i])
    if current:
        batches.append(np.asarray(current))
    return batches


@dataclass
class Windows:
    """Tokenised windows of a batch of texts, in text order (all windows of text 0, then of text 1, ...)."""

    input_ids: list[list[int]]
    owner: np.ndarray  # (W,) index of the text each window belongs to


# A LoRA run keeps only what it trained: peft's adapter files in the run's text_encoder/ folder, applied to the
# base model its config names when the run is loaded. A full fine-tune keeps the whole model there instead.
ADAPTER_CONFIG = "adapter_config.json"


def is_adapter(folder: str | Path) -> bool:
    return (Path(folder) / ADAPTER_CONFIG).is_file()


def run_text_encoder(cfg: TextEncoderConfig, finetuned: str | Path | None = None) -> "TextEncoder":
    """The text encoder a run scores with: the base model, with the run's fine-tuned weights or adapter if any.

    `finetuned` is the run's text_encoder/ folder (absent for frozen encoders): a LoRA adapter there is
    applied to `cfg.model` and merged into it (no peft in the scoring path); a full model replaces `cfg.model`.
    """
    if finetuned is None or not Path(finetuned).is_dir():
        return TextEncoder(cfg)
    if is_adapter(finetuned):
        return TextEncoder(cfg, adapter=finetuned)
    return TextEncoder(cfg.model_copy(update={"model": str(finetuned)}))


def _adapter_digest(folder: Path) -> str:
    files = sorted(folder.glob("adapter_model.*"))
    if not files:
        raise ValueError(f"{folder}: {ADAPTER_CONFIG} but no adapter_model.safetensors beside it")
    h = hashlib.sha256()
    for f in files:
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


class TextEncoder(torch.nn.Module):
    """AutoModel + pooling. `encode` (frozen, batched, no grad) or `forward` (inside a fine-tuning loop).

    `adapter`: a folder holding a peft LoRA adapter trained on `cfg.model`; it is merged into the weights.
    """

    def __init__(self, cfg: TextEncoderConfig, adapter: str | Path | None = None):
        super().__init__()
        from transformers import AutoModel, AutoTokenizer

        self.cfg = cfg
        path = resolve_model_path(cfg.model)
        try:
            with quiet_loading():
                self.tokenizer = AutoTokenizer.from_pretrained(path)
                self.model = AutoModel.from_pretrained(path)
        except (OSError, ValueError) as exc:
            raise ValueError(f"text_encoder.model: cannot load {cfg.model!r} ({exc}); {hub_hint(cfg.model)} "
                             f"({MINILM!r} is a local model that always works)") from None
        if not self.tokenizer.is_fast:
            raise ValueError(f"text_encoder.model: {cfg.model!r} has no fast tokenizer (needed for windows)")
        self.adapter = None
        if adapter is not None:
            from peft import PeftModel

            self.adapter = _adapter_digest(Path(adapter))
            self.model = PeftModel.from_pretrained(self.model, str(adapter)).merge_and_unload()
        self.model.eval()
        width = int(self.model.config.hidden_size)
        # How many layers' means the pooling puts side by side (the last one always last).
        self.pooled_layers = {"mean_middle_and_last": 2, "mean_middle_max_and_last": 3,
                              "mean_all_layers": int(self.model.config.num_hidden_layers)}.get(cfg.pooling, 1)
        self.dim = self.pooled_layers * width
        # Zero-shot similarity compares the last layer's part only (moderation.zeroshot); None: the whole vector.
        self.similarity_dims = width if self.pooled_layers > 1 else None
        limit = getattr(self.model.config, "max_position_embeddings", None) or cfg.max_length
        self.max_length = min(cfg.max_length, int(limit))
        self.precision = cfg.precision
        if self.precision == "bf16" and not cpu_has_native_bf16():
            log.warning("text_encoder.precision=bf16 on a CPU without native bf16: emulated, slower than fp32")
        self.identity = self._identity(path)
        if cfg.normalize:
            prepare_normalizer()  # its word tables load here (~1 s once), not on the first post that needs them

    def _identity(self, path: str) -> str:
        """A stable key for the embedding cache: model weights' location and size, and windowing settings."""
        weights = sorted(Path(path).glob("*.safetensors")) + sorted(Path(path).glob("*.bin")) if Path(path).is_dir() else []
        stamp = ",".join(f"{w.name}:{w.stat().st_size}" for w in weights)
        c = self.cfg
        # The embedding cache holds CPU encodings: bf16 ones differ slightly from fp32 ones, so key on which.
        raw = f"{c.model}|{stamp}|{c.pooling}|{self.max_length}|{c.window_stride}|{c.max_windows}"
        if self.uses_bf16("cpu"):
            raw += "|bf16"
        # Normalised texts embed differently; appended only when on, so existing caches keep their keys.
        if c.normalize:
            raw += f"|normalize-v{normalizer_identity()}"
        if c.platform_markup == "strip":
            raw += f"|markup-strip-v{markup_version}"
        if self.adapter:  # the same base with another adapter embeds differently
            raw += f"|adapter:{self.adapter}"
        return "text-" + hashlib.sha256(raw.encode()).hexdigest()[:16]

    def uses_bf16(self, device: torch.device | str = "cpu") -> bool:
        """Whether `encode` on `device` runs in bf16: always for 'bf16'; for 'auto' on a native-bf16 CPU only."""
        if self.precision == "bf16":
            return True
        return self.precision == "auto" and torch.device(device).type == "cpu" and cpu_has_native_bf16()

    def windows(self, texts: list[str]) -> Windows:
        stride = min(self.cfg.window_stride, self.max_length // 2)
        # Here, not in the callers: frozen encoding and fine-tuning both tokenise through this method.
        texts = model_texts(texts, self.cfg.normalize, self.cfg.platform_markup == "strip")
        enc = self.tokenizer(
            texts, truncation=True, max_length=self.max_length, stride=stride,
            return_overflowing_tokens=True, padding=False,
        )
        owner = np.asarray(enc["overflow_to_sample_mapping"], dtype=np.int64)
        ids = enc["input_ids"]
        # Cap windows per text: counts how many windows each text has kept so far.
        keep, seen = [], {}
        for i, text_idx in enumerate(owner):
            seen[text_idx] = seen.get(text_idx, 0) + 1
            if seen[text_idx] <= self.cfg.max_windows:
                keep.append(i)
        cut = sum(1 for n in seen.values() if n > self.cfg.max_windows)
        if cut:
            log.warning("%d of %d texts are longer than text_encoder.max_windows=%d windows of %d tokens; "
                        "their remaining tokens are not scored", cut, len(texts), self.cfg.max_windows, self.max_length)
        return Windows([ids[i] for i in keep], owner[keep])

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(B, dim) unit-length window embeddings."""
        layered = self.pooled_layers > 1
        result = self.model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=layered)
        out = result.last_hidden_state  # (B, T, H)
        if self.cfg.pooling == "cls":
            return torch.nn.functional.normalize(out[:, 0], dim=-1)
        mask = attention_mask.unsqueeze(-1).to(out.dtype)  # (B, T, 1)

        def mean(layer):
            return torch.nn.functional.normalize((layer * mask).sum(1) / mask.sum(1).clamp(min=1.0), dim=-1)

        if not layered:
            return mean(out)
        # hidden_states[0] is the embedding layer; the middle transformer layer is len // 2. Each part is unit
        # length, the whole scaled to unit length too, so cosine similarity (zero-shot prototypes) still works.
        middle = result.hidden_states[len(result.hidden_states) // 2]
        if self.cfg.pooling == "mean_all_layers":
            parts = [mean(h) for h in result.hidden_states[1:-1]] + [mean(out)]
        elif self.cfg.pooling == "mean_middle_max_and_last":
            # Padding can never be a token's maximum; the last layer's mean stays last (zero-shot compares it).
            peak = out.masked_fill(mask == 0, torch.finfo(out.dtype).min).amax(1)
            parts = [mean(middle), torch.nn.functional.normalize(peak, dim=-1), mean(out)]
        else:
            parts = [mean(middle), mean(out)]
        return torch.cat(parts, dim=-1) / len(parts) ** 0.5  # (B, len(parts) * H)

    def pad(self, ids: list[list[int]], device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        batch = self.tokenizer.pad({"input_ids": ids}, return_tensors="pt")
        return batch["input_ids"].to(device), batch["attention_mask"].to(device)

    @torch.inference_mode()
    def encode(self, texts: list[str], progress: bool = False, device: str = "cpu") -> tuple[np.ndarray, np.ndarray]:
        """(window embeddings (W, H) float32, owner (W,) int64) for `texts`."""
        from tqdm.auto import tqdm

        win = self.windows(texts)
        budget = CPU_TOKENS_PER_BATCH if torch.device(device).type == "cpu" else None
        batches = length_batches([len(ids) for ids in win.input_ids], self.cfg.batch_size, budget)
        out = np.zeros((len(win.input_ids), self.dim), dtype=np.float32)
        self.model.to(device)
        bf16 = torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=self.uses_bf16(device))
        with bf16:
            for idx in tqdm(batches, desc="embed text", unit="batch", disable=not progress, mininterval=5):
                ids, mask = self.pad([win.input_ids[i] for i in idx], device)
                out[idx] = self.forward(ids, mask).float().cpu().numpy()
        return out, win.owner
