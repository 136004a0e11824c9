"""`xtuner protocols [NAME]`: the reference recipes (protocol presets), and each one's settings with sources."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("protocols", help="list the protocol presets, or show one's settings and their sources")
    p.add_argument("name", nargs="?", help="a protocol to show (its fidelity table, as in docs/fidelity.md)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from xtuner.protocols import get_protocol, markdown_table, protocol_names

    if args.name:
        proto = get_protocol(args.name)
        print(f"{proto.name} v{proto.version}: {proto.title} (written for {proto.model})\n")
        print(markdown_table(proto))
        return 0
    for name in protocol_names():
        proto = get_protocol(name)
        pairs = ", ".join(f"{t}/{m}" for t, m in proto.covers())
        print(f"{proto.name} v{proto.version}  {proto.title}\n    covers: {pairs}")
    return 0
