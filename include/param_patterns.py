"""Param ``pattern``s read as JSON Schema reads them (ECMA-262), not as Python's ``re`` does.

Airflow checks a Param's ``pattern`` with Python's ``re``; JSON Schema (and the UI's trigger form)
read it as ECMA-262. The two differ where it matters for hostile input: Python's ``$`` also
matches before a final newline, and its ``\\d``/``\\w`` match any Unicode digit or letter.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator


def _pieces(pattern: str) -> Iterator[tuple[str, bool]]:
    """``(piece, in_class)`` for each token of ``pattern``: an escape (two characters), a class
    opening with its leading ``^`` or ``]`` literal, or one character."""
    in_class = False
    i = 0
    while i < len(pattern):
        piece = pattern[i : i + 2] if pattern[i] == "\\" else pattern[i]
        i += len(piece)
        if not in_class and piece == "[":
            in_class = True
            # A ']' first in a class (after an optional '^') is a literal, not its end.
            for lead in ("^", "]"):
                if pattern[i : i + 1] == lead:
                    piece += lead
                    i += 1
            yield piece, False
        elif in_class:
            in_class = piece != "]"
            yield piece, True
        else:
            yield piece, False


def end_anchored(pattern: str) -> str:
    """``pattern`` with each end anchor ``$`` (outside a character class) written ``$(?!\\n)``,
    which means "end of text" both in Python and in ECMA-262 (``\\Z`` is not ECMA-262)."""
    out = []
    rest = pattern
    for piece, in_class in _pieces(pattern):
        rest = rest[len(piece) :]
        if piece == "$" and not in_class and not rest.startswith("(?!\\n)"):
            piece = "$(?!\\n)"
        out.append(piece)
    return "".join(out)


_OUTSIDE = {
    "$": r"\Z",
    r"\d": "[0-9]",
    r"\D": "[^0-9]",
    r"\w": "[A-Za-z0-9_]",
    r"\W": "[^A-Za-z0-9_]",
}
_INSIDE = {r"\d": "0-9", r"\w": "A-Za-z0-9_"}


@functools.lru_cache(maxsize=256)
def ecma_regex(pattern: str) -> re.Pattern[str]:
    """``pattern`` compiled with the meaning JSON Schema gives it (ECMA-262, no flags) where
    Python's differs: ``$`` outside a class is ``\\Z``, and ``\\d``/``\\w`` are ASCII."""
    out = [
        (_INSIDE if in_class else _OUTSIDE).get(piece, piece)
        for piece, in_class in _pieces(pattern)
    ]
    return re.compile("".join(out))
