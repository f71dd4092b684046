"""`moderation check-config FILE`: validate a training config or a serve settings file, every problem at once."""

from __future__ import annotations

import sys
from pathlib import Path

from .common import add_overrides


def add_parser(sub, parents, argv) -> None:
    p = sub.add_parser("check-config", parents=parents,
                       help="validate a training config or a serve settings file and report every problem at once")
    p.add_argument("config", help="training config YAML (configs/*.yaml) or serve settings YAML")
    add_overrides(p)
    p.add_argument("--serve", action="store_true",
                   help="treat FILE as serve settings (the default decides by its keys)")
    p.set_defaults(handler=run)


def run(args) -> int:
    from moderation.config import Config, read_yaml

    tree = read_yaml(args.config)
    if args.serve or _is_serve_settings(tree, set(Config.model_fields)):
        return _check_serve(args)
    return _check_training(args)


def _is_serve_settings(tree, training_keys: set[str]) -> bool:
    """A serve settings file has serve keys (queue_url, api_keys, max_batch_size ...) and no training section."""
    from serve.settings import ServeSettings

    return bool(set(tree) & set(ServeSettings.model_fields)) and not set(tree) & training_keys


def _check_training(args) -> int:
    from moderation.config import load_config

    config = load_config(args.config, args.overrides)  # ConfigError lists every problem
    missing = [f"datasets.{n}.path: {d.path} does not exist" for n, d in config.datasets.items()
               if d.loader != "hub" and not Path(d.path).exists()]
    for line in missing:
        print(f"warning: {line}", file=sys.stderr)
    print(f"{args.config}: OK, training config ({len(config.categories)} categories, {len(config.datasets)} "
          f"datasets, fusion {config.head.fusion}, text encoder {config.text_encoder.model}, "
          f"image encoder {config.image_encoder.kind})")
    return 0


def _check_serve(args) -> int:
    from serve.settings import load_settings

    if args.overrides:
        raise ValueError(f"overrides {args.overrides}: key=value overrides apply to training configs; "
                         "serve settings take MODERATION_* environment variables")
    from serve.settings import MissingApiKeys

    keys_note = ""
    try:
        settings = load_settings(args.config)  # ValueError naming every bad key
    except MissingApiKeys:
        # Not an error for a local run: `moderation serve` then makes a local admin key (and says so).
        settings = load_settings(args.config, auth="disabled")
        keys_note = "; no API keys: `moderation serve` will create a local admin key (set MODERATION_API_KEYS " \
                    "or api_keys for a real deployment)"
    print(f"{args.config}: OK, serve settings (queue {settings.queue_url}, "
          f"model {settings.run_dir or settings.registry_dir or 'shipped default model'}){keys_note}")
    return 0
