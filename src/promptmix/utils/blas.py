"""Limit numpy's BLAS to one thread for a block of many small matrix products.

A multi-threaded BLAS wakes its worker threads for every call; for products of a few hundred
thousand flops (the tiles of :func:`promptmix.density.density_map`) that costs more than the
product, and on a busy machine the spinning workers compete with every other process. Inside
:func:`single_blas_thread` numpy's BLAS runs on the calling thread only; the previous setting is
restored on exit.

How: ``threadpoolctl`` when it is installed; otherwise numpy's own bundled OpenBLAS
(``numpy.libs`` / ``numpy/.dylibs``, the library of the pip wheels) through its
``openblas_set_num_threads`` entry point, found once with :mod:`ctypes`. Where neither is found
(another BLAS, e.g. Accelerate or MKL without threadpoolctl) it does nothing. The setting is
process-wide, so a BLAS call on another thread of this process during the block also runs on
one thread (it still gives the same result).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import threading
from pathlib import Path
from typing import Callable, Iterator

logger = logging.getLogger(__name__)

_LOCK = threading.Lock()
_depth = 0  # nesting of single_blas_thread blocks (the outermost one sets and restores)
_saved: int | None = None

# (get, set) symbol pairs of the OpenBLAS builds numpy has shipped: scipy-openblas (64-bit ints), older 64-bit, plain
_SYMBOLS = (("scipy_openblas_get_num_threads64_", "scipy_openblas_set_num_threads64_"),
            ("scipy_openblas_get_num_threads", "scipy_openblas_set_num_threads"),
            ("openblas_get_num_threads64_", "openblas_set_num_threads64_"),
            ("openblas_get_num_threads", "openblas_set_num_threads"))


@functools.lru_cache(maxsize=1)
def _openblas() -> tuple[Callable[[], int], Callable[[int], None]] | None:
    """numpy's bundled OpenBLAS get/set-threads functions, or None."""
    import numpy as np

    root = Path(np.__file__).resolve().parent
    candidates = []
    for folder in (root.parent / "numpy.libs", root / ".dylibs"):
        if folder.is_dir():
            candidates += sorted(p for p in folder.iterdir() if "openblas" in p.name.lower())
    for path in candidates:
        try:
            lib = ctypes.CDLL(str(path))  # already loaded by numpy: the same handle
        except OSError:
            continue
        for get_name, set_name in _SYMBOLS:
            if hasattr(lib, get_name) and hasattr(lib, set_name):
                get, set_ = getattr(lib, get_name), getattr(lib, set_name)
                get.restype, get.argtypes = ctypes.c_int, []
                set_.restype, set_.argtypes = None, [ctypes.c_int]
                return (lambda: int(get())), (lambda n: set_(int(n)))
    logger.debug("no OpenBLAS found beside numpy; BLAS threads are left as they are")
    return None


@functools.lru_cache(maxsize=1)
def _controller() -> Callable[[], contextlib.AbstractContextManager] | None:
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return None
    return lambda: threadpool_limits(limits=1, user_api="blas")


def blas_threads() -> int | None:
    """numpy's BLAS thread count as set now (None when it cannot be read)."""
    found = _openblas()
    return found[0]() if found else None


def set_blas_threads(n: int) -> bool:
    """Set numpy's BLAS thread count (benchmarks); False when no OpenBLAS was found."""
    found = _openblas()
    if found is None:
        return False
    found[1](n)
    return True


@contextlib.contextmanager
def single_blas_thread() -> Iterator[None]:
    """Run the block with numpy's BLAS on one thread; restores the previous count afterwards."""
    global _depth, _saved
    tpc = _controller()
    if tpc is not None:
        with tpc():
            yield
        return
    found = _openblas()
    if found is None:
        yield
        return
    get, set_ = found
    with _LOCK:
        if _depth == 0:
            _saved = get()
            if _saved != 1:
                set_(1)
        _depth += 1
    try:
        yield
    finally:
        with _LOCK:
            _depth -= 1
            if _depth == 0 and _saved is not None and _saved != 1:
                set_(_saved)
