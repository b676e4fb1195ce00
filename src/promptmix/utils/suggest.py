""""did you mean ...?" for a mistyped key, command or name (:func:`difflib.get_close_matches`)."""

from __future__ import annotations

import difflib
from typing import Iterable


def close_matches(word: str, choices: Iterable[str], n: int = 1) -> list[str]:
    """The choices closest to ``word`` (none when nothing is close)."""
    choices = [str(c) for c in choices]
    by_lower = {c.lower(): c for c in choices}
    return [by_lower[m] for m in difflib.get_close_matches(str(word).lower(), list(by_lower), n=n, cutoff=0.6)]


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """``" (did you mean 'keep_percent'?)"`` or ``""``."""
    found = close_matches(word, choices)
    return f" (did you mean {found[0]!r}?)" if found else ""
