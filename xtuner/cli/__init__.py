"""The `xtuner` command line.

Each sub-command lives in its own module ``xtuner/cli/cmd_<name>.py`` that defines
``register(subparsers) -> None``; modules are discovered automatically, so adding a command touches no core file.
A handler is set with ``parser.set_defaults(func=handler)``; the handler gets the parsed args and returns an exit
code (or None for 0). Errors the user can fix are raised as XtunerError and printed without a traceback.

Everything the command prints (its own lines, Ray's and MLflow's messages, a traceback of an unexpected error) goes
through `xtuner.cluster.redact.RedactingStream`: URI passwords and registered secrets (secret-named environment
variables, passwords in the spec's URIs and in URIs on the command line) never reach the terminal or a log that
captures it.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys

from xtuner.errors import XtunerError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xtuner",
        description="Zero-shot cross-lingual transfer sweeps: train on English, evaluate on every language.",
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if mod.name.startswith("cmd_"):
            importlib.import_module(f"{__name__}.{mod.name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from xtuner.cluster.redact import RedactingStream, register_env_secrets, register_secrets_in

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    register_env_secrets()
    # URI passwords on the command line (--storage, --tracking-uri, --set): masked even where a message quotes
    # only a piece of the URI
    register_secrets_in(list(sys.argv[1:] if argv is None else argv))
    out, err = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = RedactingStream(out), RedactingStream(err)
    try:
        return _main(argv)
    finally:
        sys.stdout, sys.stderr = out, err


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from xtuner import __version__

        print(__version__)
        return 0
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        rc = args.func(args)
    except XtunerError as e:
        text = ""
        for line in (line.strip() for line in str(e).splitlines() if line.strip()):
            text += (" " if not text or text.endswith(":") else "; ") + line  # "N failed:" + its list, no ":;"
        print(f"error:{text or ' ' + type(e).__name__}", file=sys.stderr)  # one line, always
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception:  # a bug, not a user error: the traceback, through the redacting stream
        import traceback

        traceback.print_exc()
        return 1
    return int(rc or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
