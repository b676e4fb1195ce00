"""How chatty a command is: our logs by ``-v``, and the libraries we call kept quiet by default.

transformers, diffusers, datasets and huggingface_hub each print their own warnings and progress
bars ("Loading pipeline components", "Generating train split", a repeat of our truncation notice...).
Our own progress bars and summaries already say what is happening, so without ``-v`` their
warnings are raised to ERROR and their bars switched off. Variables the user has set win.
"""

from __future__ import annotations

import logging
import os
import sys

_QUIET_ENV = {
    "TRANSFORMERS_VERBOSITY": "error",
    "DIFFUSERS_VERBOSITY": "error",
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
}


def configure_output(verbose: int = 0) -> None:
    """Log level from ``-v`` count (WARNING, INFO, DEBUG); without ``-v``, quiet the libraries too."""
    level = logging.WARNING if verbose <= 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if verbose <= 0:
        quiet_libraries()


def quiet_libraries() -> None:
    """Set the libraries' own switches (environment for those not imported yet, their APIs for the others)."""
    for key, value in _QUIET_ENV.items():
        os.environ.setdefault(key, value)
    quiet_imported_libraries()


def quiet_imported_libraries() -> None:
    """Apply the quiet settings to libraries already imported; diffusers reads no variable for its bars,
    so code that imports it calls this afterwards."""
    if os.environ.get("HF_HUB_DISABLE_PROGRESS_BARS", "") not in ("1", "true", "True", "TRUE"):
        return
    if "diffusers" in sys.modules:
        from diffusers.utils import logging as dlog

        dlog.disable_progress_bar()
        if os.environ.get("DIFFUSERS_VERBOSITY") == "error":
            dlog.set_verbosity_error()
    if "transformers" in sys.modules:
        from transformers.utils import logging as tlog

        tlog.disable_progress_bar()
        if os.environ.get("TRANSFORMERS_VERBOSITY") == "error":
            tlog.set_verbosity_error()
    if "datasets" in sys.modules:
        import datasets

        datasets.disable_progress_bars()
    if "huggingface_hub" in sys.modules:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
