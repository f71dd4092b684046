"""Reading the text inside a picture (OCR), so what a meme *says* is scored like a caption.

`OcrReader` wraps RapidOCR with the PP-OCR detection and recognition ONNX models its wheel carries
(Apache-2.0). The settings are the ones that read outlined meme captions on busy pictures here: the image's
longer side scaled to at most `limit_side_len` (480) for detection, no angle classifier (captions are upright;
it costs a third of the time). Text lines are returned top to bottom, joined with spaces, then tidied
(`tidy`): meme-generator watermarks (web addresses such as imgflip.com) are dropped, and words OCR ran together
(outlined capitals lose their spaces: THATAWKWARDMOMENT) are split again with `wordsegment` (Apache-2.0,
English unigram and bigram counts). On the religious memes the tidied text scores hate like the caption does
(`moderation bench pictures`).

Detection runs per image (the library has no batch API for it); recognition batches the lines of an image
(`rec_batch_num`). The reader is built lazily, so configs with `ocr: false` never load it.
"""

from __future__ import annotations

import importlib.metadata
import logging
import re
from collections.abc import Sequence

import numpy as np
from PIL import Image

from moderation.encoders.words import english_words

log = logging.getLogger(__name__)

LIMIT_SIDE_LEN = 480
REC_BATCH = 16
MIN_LINE_SCORE = 0.5  # RapidOCR's own default: lines recognised with less confidence are dropped
# A web address, as meme generators stamp into a corner (imgflip.com, www.example.tv/page).
WEB_ADDRESS = re.compile(r"\b(?:https?://)?(?:www\.)?[\w-]+(?:\.[\w-]+)*\.(?:com|org|net|tv|co|io|me|ly|us|uk|info)"
                         r"\b\S*", re.IGNORECASE)
# Only tokens this long are split: short unknown tokens are more often names, slang or misreadings. 7 was
# chosen on the meme sets' validation split (5 and 6 split more, and scored no better).
MIN_RUN_LETTERS = 7
TIDY_VERSION = 1  # part of the reader's identity: a change to `tidy` must not be served from a stale cache


def tidy(text: str) -> str:
    """OCR text made to read like a caption: web addresses dropped, run-together words split.

    >>> tidy("THAT AWKWARD MOMENT YOUSTARTSINGING BEFORE THE CHOIR imgflip.com")
    'THAT AWKWARD MOMENT you start singing BEFORE THE CHOIR'
    """
    wordsegment = english_words()
    words = []
    for token in WEB_ADDRESS.sub(" ", text).split():
        letters = re.sub(r"[^A-Za-z]", "", token)
        if len(letters) >= MIN_RUN_LETTERS and letters.lower() not in wordsegment.UNIGRAMS:
            parts = wordsegment.segment(token)
            words.extend(parts if len(parts) > 1 else [token])
        else:
            words.append(token)
    return " ".join(words)


class OcrReader:
    """Images -> the text written in them ("" where there is none)."""

    def __init__(self, limit_side_len: int = LIMIT_SIDE_LEN, threads: int | None = None):
        self.limit_side_len = limit_side_len
        self.threads = threads
        version = importlib.metadata.version("rapidocr")
        # Everything that changes what is read: a cache keyed on it never serves stale text.
        self.identity = (f"rapidocr={version};det_limit={limit_side_len};cls=off;min_score={MIN_LINE_SCORE};"
                         f"tidy={TIDY_VERSION}")
        self._engine = None

    def _load(self):
        if self._engine is None:
            try:
                from rapidocr import RapidOCR
            except ImportError as exc:  # pragma: no cover - rapidocr is a dependency
                raise RuntimeError("OCR needs the rapidocr package (pip install rapidocr==3.10.0)") from exc
            params = {"Global.log_level": "error", "Global.use_cls": False, "Global.text_score": MIN_LINE_SCORE,
                      "Det.limit_side_len": self.limit_side_len, "Rec.rec_batch_num": REC_BATCH}
            if self.threads:
                params["EngineConfig.onnxruntime.intra_op_num_threads"] = self.threads
            self._engine = RapidOCR(params=params)
            english_words()  # loaded with the engine (0.25 s), not on the first picture a service is sent
        return self._engine

    def read_one(self, image: Image.Image) -> str:
        result = self._load()(np.asarray(image.convert("RGB")))
        lines = list(result.txts or [])
        boxes = result.boxes if result.boxes is not None else []
        if len(boxes) == len(lines) and lines:
            # Reading order: top to bottom, then left to right (by each box's top-left corner).
            order = sorted(range(len(lines)), key=lambda i: (round(float(boxes[i][0][1]) / 10), float(boxes[i][0][0])))
            lines = [lines[i] for i in order]
        return tidy(" ".join(line.strip() for line in lines if line.strip()))

    def read(self, images: Sequence[Image.Image]) -> list[str]:
        return [self.read_one(image) for image in images]


def build_ocr_reader(image_encoder_config) -> OcrReader | None:
    """The reader a config asks for (`image_encoder.ocr`), or None."""
    return OcrReader() if image_encoder_config.ocr else None
