"""The one exception type for errors a user can cause (bad spec, missing data, unknown name).

The CLI catches :class:`XtunerError` and prints its message without a traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class XtunerError(Exception):
    """A problem the user can fix: the message names the problem and, where possible, the fix."""


def unknown_name(kind: str, name: str, valid: Iterable[str], where: str = "") -> XtunerError:
    """Build the standard 'unknown X' error with a did-you-mean hint and the list of valid names.

    `where` adds context, e.g. unknown_name("language", "de", langs, where="for task 'synth-xnli'")."""
    valid = sorted(valid)
    hint = difflib.get_close_matches(str(name), valid, n=1)
    msg = f"unknown {kind} {name!r}" + (f" {where}" if where else "")
    if hint:
        msg += f" (did you mean {hint[0]!r}?)"
    msg += f"; valid {kind}s: {', '.join(valid) if valid else '(none)'}"
    return XtunerError(msg)
