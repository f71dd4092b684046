"""Image decoding, owned in one place: every image the project reads (dataset files, uploads) goes through
`load_image`, which returns an upright RGB `PIL.Image` or raises `ImageError` saying which image and why.

Decoding is the part of the pipeline that faces untrusted bytes, so it refuses decompression bombs (a small
file declaring a huge canvas) before any pixel is decoded, and never trusts a file's extension.
"""

from __future__ import annotations

import io
import logging
import warnings
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

logger = logging.getLogger(__name__)

# ~40 MP: comfortably above phone photos (12-50 MP are rare in moderation traffic), far below what could
# exhaust a worker's memory (40 MP RGB is 120 MB decoded).
DEFAULT_MAX_PIXELS = 40_000_000

# Modes that carry transparency once converted to RGBA; flattened onto white rather than black, because a
# transparent background dropped to black turns black text and line art invisible.
_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}


class ImageError(ValueError):
    """An image could not be decoded: the message names the source and the reason."""


def load_image(source: str | Path | bytes | Image.Image, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode a file path or uploaded bytes into an upright RGB image (a PIL image is checked and converted).

    The format is detected from the content (some dataset files named .png are JPEG). EXIF orientation is
    applied and transparency is flattened onto white. Raises `ImageError` when the source is missing, not an
    image, truncated or corrupt, or larger than `max_pixels` (or PIL's own `Image.MAX_IMAGE_PIXELS`).

    >>> load_image(b"not an image")
    Traceback (most recent call last):
    ...
    moderation.encoders.images.ImageError: uploaded bytes: not an image (no known image format matches its content)
    """
    if max_pixels <= 0:
        raise ValueError(f"max_pixels must be positive, got {max_pixels}")
    if isinstance(source, Image.Image):  # already decoded: the size limit and RGB conversion still apply
        _check_size(source, "PIL image", max_pixels)
        return _to_rgb(source)
    where = "uploaded bytes" if isinstance(source, (bytes, bytearray)) else str(source)
    try:
        with _open(source, where) as img:
            _check_size(img, where, max_pixels)
            img.load()
            return _to_rgb(_upright(img, where))
    except ImageError:
        raise
    except FileNotFoundError:
        raise ImageError(f"{where}: no such file") from None
    except IsADirectoryError:
        raise ImageError(f"{where}: is a directory, not an image file") from None
    except UnidentifiedImageError:
        raise ImageError(f"{where}: not an image (no known image format matches its content)") from None
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise ImageError(f"{where}: too large, refused as a possible decompression bomb ({exc})") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        # PIL reports truncated data as OSError and malformed headers or chunks as ValueError/SyntaxError.
        raise ImageError(f"{where}: truncated or corrupt image data ({exc})") from None


def _open(source: str | Path | bytes, where: str) -> Image.Image:
    if isinstance(source, (bytes, bytearray)):
        fp: io.BytesIO | Path = io.BytesIO(bytes(source))
    elif isinstance(source, (str, Path)):
        fp = Path(source)
    else:
        raise TypeError(f"load_image: expected a path, bytes or a PIL image, got {type(source).__name__}")
    # PIL emits DecompressionBombWarning from inside Image.open, before our own size check can run; turning
    # it into an error here is what refuses the image. (catch_warnings swaps a process-wide filter list, so
    # two threads decoding at once can leave this one filter switched on: harmless, it only makes PIL stricter.)
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        # formats=None: PIL sniffs the content; the extension is never consulted.
        return Image.open(fp, formats=None)


def _check_size(img: Image.Image, where: str, max_pixels: int) -> None:
    # Image.open reads only the header, so the declared size is known before any pixel is decoded.
    width, height = img.size
    limit = max_pixels if Image.MAX_IMAGE_PIXELS is None else min(max_pixels, Image.MAX_IMAGE_PIXELS)
    if width * height > limit:
        raise ImageError(
            f"{where}: too large ({width}x{height} = {width * height:,} pixels; at most {limit:,} allowed, "
            "refused as a possible decompression bomb)"
        )


def _upright(img: Image.Image, where: str) -> Image.Image:
    try:
        return ImageOps.exif_transpose(img)
    except Exception as exc:  # noqa: BLE001 - a broken EXIF block should not cost us the pixels
        logger.warning("%s: ignoring unreadable EXIF orientation (%s)", where, exc)
        return img


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in _ALPHA_MODES:
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    # convert() always returns a new image, so the result never refers to the (closed) file.
    return img.convert("RGB")
