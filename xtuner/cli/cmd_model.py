"""`xtuner model build NAME` and `xtuner model prepare NAME`."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("model", help="build or locate models")
    msub = p.add_subparsers(dest="model_command", metavar="ACTION")
    b = msub.add_parser("build", help="build a built-in model (tokenizer + MLM pretraining) into the cache")
    b.add_argument("name", help="built-in model name, e.g. tiny-xlmr")
    b.add_argument("--seed", type=int, default=0)
    budget = b.add_mutually_exclusive_group()
    budget.add_argument(
        "--minutes", type=float, help="pretraining budget, converted to steps at a fixed nominal rate"
    )
    budget.add_argument(
        "--steps", type=int, help="pretraining budget in optimizer steps (default: the recipe's)"
    )
    b.add_argument(
        "--threads", type=int, help="torch threads (default: $XTUNER_NUM_THREADS or torch's choice)"
    )
    b.add_argument("--force", action="store_true", help="rebuild even if a verified build is cached")
    b.add_argument(
        "--out", help="write the build here instead of the cache (e.g. to refresh the shipped copy)"
    )
    b.set_defaults(func=build)
    pr = msub.add_parser("prepare", help="print the local path of a model, building it if needed")
    pr.add_argument("name", help="builtin:<name>[@seed], a local directory, or a hub id")
    pr.set_defaults(func=prepare)
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])


def build(args: argparse.Namespace) -> int:
    import os
    from pathlib import Path

    from xtuner import models
    from xtuner.models.build import build_tiny_xlmr, steps_for_minutes

    if args.threads:
        os.environ["XTUNER_NUM_THREADS"] = str(args.threads)
    name = args.name.removeprefix("builtin:")
    steps = steps_for_minutes(args.minutes) if args.minutes else args.steps
    if args.out:
        if name not in models.BUILTIN:
            from xtuner.errors import unknown_name

            raise unknown_name("built-in model", name, models.BUILTIN)
        kwargs = {} if steps is None else {"steps": steps}
        path = build_tiny_xlmr(Path(args.out), seed=args.seed, **kwargs)
    else:
        path = models.build_model_dir(name, seed=args.seed, steps=steps, force=args.force)
    print(path)
    return 0


def prepare(args: argparse.Namespace) -> int:
    from xtuner.models import resolve_model

    print(resolve_model(args.name))
    return 0
