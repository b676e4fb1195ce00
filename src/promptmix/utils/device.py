"""Device and dtype choice: fp16 and batching on CUDA, fp32 on CPU.

torch is imported when a device is picked, not when this module is (configs import the dtype names).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import ConfigError

if TYPE_CHECKING:
    import torch

_DTYPE_ALIASES = {"float32": "float32", "fp32": "float32", "float16": "float16", "fp16": "float16",
                  "bfloat16": "bfloat16", "bf16": "bfloat16"}
DTYPE_NAMES = ("auto", *_DTYPE_ALIASES)


def pick_device(device: str | None = None) -> "torch.device":
    """``None``/"auto" picks CUDA when available, then MPS, else CPU."""
    import torch

    if device in (None, "", "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise ConfigError(f"device: expected 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps', got {device!r}") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r}: CUDA is not available on this machine (torch {torch.__version__}); "
                          "use 'auto' or 'cpu'")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ConfigError(f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                          f"cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) is not None
                                  and torch.backends.mps.is_available()):
        raise ConfigError(f"device {device!r}: MPS is not available on this machine; use 'auto' or 'cpu'")
    return dev


def _dtype_name(dtype: str) -> str:
    try:
        return _DTYPE_ALIASES[dtype]
    except (KeyError, TypeError):
        raise ConfigError(f"dtype: expected one of auto, {', '.join(sorted(_DTYPE_ALIASES))}; got {dtype!r}") from None


def pick_dtype(dtype: str | None, device: "torch.device") -> "torch.dtype":
    """``None``/"auto" gives float16 on CUDA and float32 elsewhere."""
    import torch

    if dtype in (None, "", "auto"):
        return torch.float16 if device.type == "cuda" else torch.float32
    return getattr(torch, _dtype_name(dtype))


def device_type(device: str | None = None) -> str:
    """The kind of device ``device`` names ("cuda", "mps", "cpu"), without checking it exists (for cache keys)."""
    if device in (None, "", "auto"):
        return pick_device(None).type
    text = str(device)
    return text.split(":", 1)[0] if text.split(":", 1)[0] in ("cuda", "mps", "cpu", "xpu") else text


def effective_dtype(dtype: str | None, device: str | None = None) -> str:
    """The dtype a stage computes in, by name ("float16", "float32", "bfloat16"): ``auto``/None resolved for the
    device (float16 on CUDA, float32 elsewhere), aliases ("fp16") spelled out. What cache keys hold, so a CPU
    run and a GPU run of the same config do not share cached outputs."""
    if dtype in (None, "", "auto"):
        return "float16" if device_type(device) == "cuda" else "float32"
    return _dtype_name(dtype)
