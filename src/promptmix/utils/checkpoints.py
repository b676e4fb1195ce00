"""Accelerate checkpoints written atomically across processes.

Every rank writes its part of ``accelerator.save_state`` into a temporary sibling folder; the main
process adds a JSON file of the caller's own state and renames the folder into place only when
everything is there. A checkpoint folder that exists is therefore always complete, so resuming
after a ``kill -9`` never reads half a checkpoint.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from .io import write_json_atomic


def save_checkpoint(accelerator, final: Path, state_file: str, state: dict[str, Any]) -> None:
    """Write ``accelerator.save_state`` + ``state_file`` (JSON of ``state``) as the folder ``final``.

    Collective: every process must call it. On return the main process has renamed the complete
    folder into place; callers that prune old checkpoints do so on the main process afterwards and
    then ``wait_for_everyone()``.
    """
    tmp = final.parent / f".{final.name}.tmp"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        write_json_atomic(tmp / state_file, state)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
