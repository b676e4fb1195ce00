"""Device and dtype choice: fp16 and batching on CUDA, fp32 on CPU."""

from __future__ import annotations

import torch

from ..errors import ConfigError

_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16, "fp16": torch.float16,
           "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}


def pick_device(device: str | None = None) -> torch.device:
    """``None``/"auto" picks CUDA when available, then MPS, else CPU."""
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


def pick_dtype(dtype: str | None, device: torch.device) -> torch.dtype:
    """``None``/"auto" gives float16 on CUDA and float32 elsewhere."""
    if dtype in (None, "", "auto"):
        return torch.float16 if device.type == "cuda" else torch.float32
    try:
        return _DTYPES[dtype]
    except KeyError:
        raise ConfigError(f"dtype: expected one of auto, {', '.join(sorted(_DTYPES))}; got {dtype!r}") from None
