"""Per-row seeds that depend only on the row, never on its batch, rank or restart.

Seeds are SHA-256 hashes of text, so they are the same on every process, platform and Python
version (unlike ``hash()``), and every derived choice (the conditioning image of an
image-conditioned row, the MVC mixing draw) is a pure function of the row seed.
"""

from __future__ import annotations

import hashlib

_INT63 = (1 << 63) - 1


def _hash63(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big") & _INT63


def row_seed(run_seed: int, prompt_id: str, index: int) -> int:
    """The seed of image ``index`` of prompt ``prompt_id`` in a run seeded with ``run_seed``.

    A positive integer below 2**63 (fits ``int64`` and ``torch.Generator.manual_seed``).
    """
    return _hash63(f"promptmix-row:{int(run_seed)}:{prompt_id}:{int(index)}") or 1


def derived_choice(seed: int, purpose: str, n: int) -> int:
    """A deterministic index in ``range(n)`` drawn from a row seed for one ``purpose`` (e.g. "conditioning")."""
    if n <= 0:
        raise ValueError(f"n: expected a positive number of choices; got {n}")
    return _hash63(f"promptmix-{purpose}:{int(seed)}") % n
