"""What every benchmark shares: the real data it runs on, the skip rule, markdown tables and publishing.

Benchmarks run on bounded, seeded samples of the default model's own splits
(`build_splits(load_config("configs/default.yaml"))`), so token lengths and label balance are the real
ones. When ../shared/data is absent they raise `BenchmarkSkipped` naming the missing folder.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = REPO / "configs" / "default.yaml"


class BenchmarkSkipped(RuntimeError):
    """The data a benchmark needs is not on this machine; the message says what is missing."""


def load_config_checked(path: str | Path = DEFAULT_CONFIG):
    """The config, or `BenchmarkSkipped` naming every dataset folder that does not exist here."""
    from moderation.config import load_config

    config = load_config(path)
    missing = [f"{name}: {ds.path}" for name, ds in config.datasets.items()
               if ds.loader != "hub" and not Path(ds.path).exists()]
    if missing:
        raise BenchmarkSkipped(f"{path}: dataset folders absent (public data lives in ../shared/data, "
                               f"outside the repo): {'; '.join(missing)}")
    return config


def load_splits(path: str | Path = DEFAULT_CONFIG):
    """(config, DatasetDict train/validation/test) of a config; progress bars off (benchmarks log)."""
    import datasets

    from moderation.data.build import build_splits

    config = load_config_checked(path)
    datasets.disable_progress_bars()
    return config, build_splits(config, only_eval=True)


def sample_split(split, n: int | None, seed: int = 0) -> dict[str, list]:
    """Columns of `n` rows drawn at random (seeded), in random order, so any prefix is a random sample too
    (rows are stored dataset by dataset: a prefix of them would be one dataset's texts). All rows, in stored
    order, when n is None."""
    if n is None:
        return {c: split[c] for c in split.column_names}
    idx = np.random.default_rng(seed).permutation(len(split))[:n]
    sub = split.select(idx.tolist())
    return {c: sub[c] for c in sub.column_names}


def served_decisions(moderator, texts: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Texts through the serving path (`Moderator.score_arrays`, then the policy at the run's thresholds):
    (N, C) fused scores, (N,) actions (allow / review / block) and (N, C) which classes flag each post."""
    from moderation.policy import flagging_classes, threshold_actions

    fused = moderator.score_arrays(texts, batch_size=64).fused
    return (fused, threshold_actions(moderator.categories, fused, moderator.thresholds),
            flagging_classes(moderator.categories, fused, moderator.thresholds))


def md_table(header: Sequence[str], rows: Sequence[Sequence]) -> str:
    """A GitHub markdown table; None prints as an em dash."""
    def cell(v):
        return "—" if v is None else str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def fmt(value: float | None, digits: int = 3) -> str | None:
    return None if value is None else f"{value:.{digits}f}"


def pct(value: float | None, digits: int = 0) -> str | None:
    return None if value is None else f"{100 * value:.{digits}f}%"


def verdict(met: bool) -> str:
    return "**met**" if met else "**not met**"


def publish(name: str, title: str, body: str, args) -> str:
    """Write the section (unless `args.no_write`) and return the body."""
    from eval.benchmarks.sections import update_section

    if not getattr(args, "no_write", False):
        path = update_section(name, title, body)  # the command line written is this process's own
        log.info("section %r written to %s", name, path)
    return body


def add_common_options(parser) -> None:
    parser.add_argument("--no-write", action="store_true", help="print the section only; leave BENCHMARKS.md alone")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data sample")
