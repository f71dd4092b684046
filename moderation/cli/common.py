"""What several subcommands share: quieter third-party progress bars and the common options."""

from __future__ import annotations


def quiet_libraries() -> None:
    """Our own progress bars say what is happening; the libraries' per-step bars only bury them."""
    import datasets
    from transformers.utils import logging as hf_logging

    datasets.disable_progress_bars()
    hf_logging.disable_progress_bar()


def add_quiet(parser) -> None:
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def add_run(parser, what: str = "run directory") -> None:
    parser.add_argument("--run", help=f"{what} (default: the shipped default model)")


def add_overrides(parser, example: str = "train.epochs=5") -> None:
    parser.add_argument("overrides", nargs="*", help=f"key.sub=value overrides, e.g. {example}")
