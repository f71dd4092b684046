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


def existing_database(url: str, option: str) -> str:
    """`url` when its database exists; FileNotFoundError (exit 2) for a SQLite file that does not, since
    opening it would create an empty one and report on nothing. Other databases are checked by connecting."""
    from pathlib import Path

    import sqlalchemy as sa

    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError:
        raise ValueError(f"{option} {url!r}: not a database URL (sqlite:///path.db or postgresql://...)") from None
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database in ("", ":memory:") or not Path(database).is_file():
            raise FileNotFoundError(f"{option} {url}: no such database file {database or '(in memory)'!r}; give "
                                    "the URL the service writes to (its queue_url, or prediction_log_url)")
    return url
