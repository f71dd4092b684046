"""The `moderation` command: one console script with subcommands.

It is the composition root: the only place that wires the library (moderation), evaluation (eval) and
serving (serve) together. One module per subcommand, each with `add_parser(subparsers)` and a small handler
that parses arguments and calls the library. Modules import only the standard library at the top; heavy
imports (torch, transformers, ray, numpy) happen inside the handlers, so `moderation --help` is instant.
Only this package prints; errors in user input exit with status 2 and a message naming the file, key or row.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

# The subcommands in the order `--help` lists them: (name, module in this package).
COMMANDS = (
    ("check-config", "check_config"), ("train", "train"), ("release", "release"), ("ladder", "ladder"),
    ("evaluate", "evaluate"), ("predict", "predict"), ("retrain", "retrain"), ("promote", "promote"),
    ("audit", "audit"), ("live-quality", "live_quality"), ("monitor", "monitor"), ("bench", "bench"),
    ("serve", "serve"), ("score", "score"),
)


def _library_defaults() -> None:
    # Hub access is the user's to switch off (HF_HUB_OFFLINE=1), never forced here: hub ids must work for
    # users who are online, and a failed load says how to set offline mode (moderation.encoders.loading).
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The whole command line. `argv` lets a subcommand add options that need a heavy import only when it
    is the one being run (`moderation bench serving ...`)."""
    parser = argparse.ArgumentParser(prog="moderation", description=__doc__.split("\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    # `-v` is accepted after the subcommand too: the subcommands' copy has no default, so it never resets
    # a `-v` given before the subcommand.
    verbose = argparse.ArgumentParser(add_help=False)
    verbose.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True)
    for _name, module in COMMANDS:
        importlib.import_module(f"{__name__}.{module}").add_parser(sub, [verbose], argv or [])
    return parser


def parse(argv: list[str]) -> argparse.Namespace:
    parser = build_parser(argv)
    # Overrides may follow options (`train cfg.yaml -q train.epochs=3`): argparse stops filling a nargs="*"
    # positional at the first option, so collect the leftover key=value words here.
    args, extra = parser.parse_known_args(argv)
    stray = [w for w in extra if w.startswith("-") or "=" not in w or not hasattr(args, "overrides")]
    if stray:
        parser.error(f"unrecognized arguments: {' '.join(stray)}")
    if extra:
        args.overrides = [*args.overrides, *extra]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    _library_defaults()
    from moderation.config import ConfigError
    from moderation.data.records import DataError

    try:
        return args.handler(args)
    except (ConfigError, DataError, FileNotFoundError, FileExistsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:  # library errors name the bad value; show them without a traceback
        if args.verbose:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
