"""Timing shared by the benchmarks of ``scripts/`` (imported as ``_timing``: the scripts' folder is on
``sys.path`` whether a benchmark runs alone or through ``bench.py``)."""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable


def median_time(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """(median wall seconds of ``repeats`` calls of ``fn``, the last call's result)."""
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out
