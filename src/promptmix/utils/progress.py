"""Progress bars, shown on the main process only.

Every long operation goes through :func:`progress` so that bars can be switched
off in one place: set ``PROMPTMIX_NO_PROGRESS=1`` (tests do) or call
:func:`disable_progress_bars`.
"""

from __future__ import annotations

import os
from typing import Iterable, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")
_DISABLED = False


def disable_progress_bars() -> None:
    global _DISABLED
    _DISABLED = True


def enable_progress_bars() -> None:
    global _DISABLED
    _DISABLED = False


def is_main_process() -> bool:
    """True on the process with global rank 0 (torchrun/accelerate set RANK), or when not distributed."""
    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0"))) == 0


def progress_enabled() -> bool:
    return not _DISABLED and os.environ.get("PROMPTMIX_NO_PROGRESS", "") in ("", "0") and is_main_process()


# a bar appears only once its operation has run this long, so quick steps print nothing
SHOW_AFTER_SECONDS = 1.0


def progress(iterable: Iterable[T] | None = None, *, total: int | None = None, desc: str = "", unit: str = "it", **kwargs) -> tqdm:
    """A tqdm bar that is disabled off the main process or when bars are switched off.

    It is drawn only after ``SHOW_AFTER_SECONDS`` (tqdm's ``delay``; pass ``delay=0`` to show it at once).
    """
    kwargs.setdefault("delay", SHOW_AFTER_SECONDS)
    return tqdm(iterable, total=total, desc=desc, unit=unit, disable=not progress_enabled(), dynamic_ncols=True, **kwargs)
