"""`moderation promote VERSION`: make a registry version current."""

from __future__ import annotations


def add_parser(sub, parents, argv) -> None:
    p = sub.add_parser("promote", parents=parents,
                       help="make a registry version current (serving replicas take it up live)")
    p.add_argument("version")
    p.add_argument("--registry", required=True)
    p.add_argument("--note", default="manual promotion")
    p.set_defaults(handler=run)


def run(args) -> int:
    from moderation.registry import Registry

    path = Registry(args.registry).promote(args.version, note=args.note)
    print(f"current model is now {path}")
    return 0
