"""Loading pretrained models through transformers: quietly, and with errors that say how to reach the hub.

Hub ids work for users who are online; offline mode is theirs to set (`HF_HUB_OFFLINE=1`), never forced
here, so a failed load says which of the two situations the user is in and what to change.

>>> "HF_HUB_OFFLINE" in hub_hint("org/model")
True
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager


def hub_offline() -> bool:
    """Whether the user switched the Hugging Face hub off (HF_HUB_OFFLINE set to a true value)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def hub_hint(model: str) -> str:
    """What to do when `model` (a hub id or a folder) could not be loaded."""
    if hub_offline():
        return (f"HF_HUB_OFFLINE is set, so hub ids load only from the local cache: to download {model!r}, "
                "unset it (`unset HF_HUB_OFFLINE`) on a machine with network access, or give a local folder")
    return ("a hub id needs network access to huggingface.co (or an earlier download in the cache); on a "
            "machine without network give a local folder, and set HF_HUB_OFFLINE=1 (`export HF_HUB_OFFLINE=1`) "
            "so hub lookups fail at once instead of after a long timeout")


@contextmanager
def quiet_loading() -> Iterator[None]:
    """No transformers progress bar ("Loading weights") while loading: a service or a CLI loads models on
    every start and the bar only buries what matters. The previous setting is restored afterwards."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()
