"""Reading annotator weights safely and fitting them to an architecture.

Weights come from safetensors files, or from the ``.pth``/``.pth.tar`` files the authors released,
read with ``torch.load(..., weights_only=True)`` only. That refuses pickles that build arbitrary
Python objects; such a file is reported with the classes it needs and how to convert it.
Common wrappers are unwrapped (``{'state_dict': ...}`` as CSRNet-pytorch saves, ``{'model': ...}``,
``{'model_state_dict': ...}``, ``{'net': ...}``) and a ``module.`` prefix left by
``nn.DataParallel`` is dropped.
"""

from __future__ import annotations

import logging
import pickle
from pathlib import Path
from typing import Any, Mapping

import torch

from ..errors import CheckpointError, InputError

logger = logging.getLogger(__name__)

WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net", "network")
_PREFIXES = ("module.", "model.")


def _numpy_safe_globals() -> list:
    """NumPy scalar/dtype reconstructors: plain data (a metric stored as ``np.float64``), safe to allow."""
    try:
        import numpy as np
    except ImportError:  # pragma: no cover
        return []
    out: list = [np.dtype]
    try:
        from numpy._core.multiarray import scalar  # numpy >= 2
    except ImportError:  # pragma: no cover
        from numpy.core.multiarray import scalar  # type: ignore[no-redef]
    out.append(scalar)
    out += [type(np.dtype(t)) for t in ("float16", "float32", "float64", "int32", "int64", "bool")]
    return out


def _torch_load_weights_only(path: Path) -> Any:
    try:
        with torch.serialization.safe_globals(_numpy_safe_globals()):
            return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        needed: list[str] = []
        try:
            needed = list(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
        except Exception:  # noqa: BLE001 - listing is best effort (old non-zip format)
            pass
        what = f" (it pickles {', '.join(needed)})" if needed else ""
        raise CheckpointError(
            f"{path}: this checkpoint needs more than weights to load{what}; promptmix only loads weights "
            f"(torch.load with weights_only=True). If you trust the file, convert it once: "
            f"`sd = torch.load('{path.name}', weights_only=False)` then keep only its state dict, e.g. "
            f"`safetensors.torch.save_file(sd['state_dict'], 'model.safetensors')`, and pass that file instead."
        ) from exc
    except (RuntimeError, EOFError, OSError) as exc:
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({type(exc).__name__}: {exc})") from exc


def _unwrap(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    for _ in range(3):  # {'model': {'state_dict': ...}} at worst
        if isinstance(obj, Mapping) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return dict(obj)
        if isinstance(obj, Mapping):
            inner = next((obj[k] for k in WRAPPER_KEYS if k in obj and isinstance(obj[k], Mapping)), None)
            if inner is not None:
                obj = inner
                continue
        break
    if isinstance(obj, Mapping):
        tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
        if tensors:
            return tensors
        keys = ", ".join(map(str, list(obj)[:10]))
        raise CheckpointError(f"{path}: no state dict found; top-level keys are [{keys}], expected tensors or "
                              f"one of the wrappers {', '.join(WRAPPER_KEYS)}")
    raise CheckpointError(f"{path}: expected a state dict (a mapping of names to tensors); got {type(obj).__name__}")


def strip_prefixes(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop a ``module.`` (DataParallel) or ``model.`` prefix shared by every key."""
    state = dict(state)
    for prefix in _PREFIXES:
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict from safetensors or a weights-only PyTorch checkpoint, unwrapped and unprefixed."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"checkpoint {path} does not exist")
    with open(path, "rb") as f:
        head = f.read(16)
    is_torch = head.startswith(b"PK") or head[:1] == b"\x80"  # zip (torch >= 1.6) or legacy pickle
    if path.suffix == ".safetensors" or not is_torch:
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            state = load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointError(f"{path}: neither a safetensors file nor a PyTorch checkpoint ({exc})") from exc
    else:
        state = _unwrap(_torch_load_weights_only(path), path)
    return strip_prefixes(state)


def load_state_dict_into(model: torch.nn.Module, state: Mapping[str, torch.Tensor], *, architecture: str,
                         source: str) -> None:
    """Load ``state`` into ``model`` strictly; a mismatch raises :class:`CheckpointError` listing the keys."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]  # in module order, easier to read than sorted
    unexpected = [k for k in state if k not in expected]
    wrong = [k for k in expected if k in state and tuple(expected[k].shape) != tuple(state[k].shape)]
    if missing or unexpected or wrong:
        def fmt(keys: list[str], limit: int = 30) -> str:
            more = f", ... ({len(keys) - limit} more)" if len(keys) > limit else ""
            return ", ".join(keys[:limit]) + more
        parts = [f"{source}: the checkpoint's keys do not fit the {architecture} architecture."]
        if missing:
            parts.append(f"Missing keys ({len(missing)}): {fmt(missing)}.")
        if unexpected:
            parts.append(f"Unexpected keys ({len(unexpected)}): {fmt(unexpected)}.")
        if wrong:
            parts.append("Shape mismatches: " + fmt([f"{k} checkpoint {tuple(state[k].shape)} vs model "
                                                     f"{tuple(expected[k].shape)}" for k in wrong]) + ".")
        parts.append("Check that the checkpoint is for this architecture (csrnet, dmcount or sasnet).")
        raise CheckpointError(" ".join(parts))
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()}, strict=True)
