"""Reading annotator weights safely and fitting them to an architecture.

Weights come from safetensors files, or from the ``.pth``/``.pth.tar`` files the authors released,
read with ``torch.load(..., weights_only=True)`` only. That refuses pickles that build arbitrary
Python objects; such a file is reported with the classes it needs and how to convert it.
Common wrappers are unwrapped (``{'state_dict': ...}`` as CSRNet-pytorch saves, ``{'model': ...}``,
``{'model_state_dict': ...}``, ``{'net': ...}``) and a ``module.`` prefix left by
``nn.DataParallel`` is dropped.

Before anything is loaded, :func:`sniff_checkpoint` says what a file is from its first bytes, so a
file that is not weights is named as what it is, with the fix: a Git LFS pointer (a clone without
``git lfs pull``; the official SASNet and DM-Count repositories ship their weights that way), an HTML
page (a download that saved an error or login page), an empty or unknown file, a truncated safetensors or
zip file. :func:`checkpoint_shapes` reads the key names and shapes without loading the tensors (the
safetensors header, or a memory-mapped ``torch.load``), for pre-flight checks.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import pickle
from pathlib import Path
from typing import Any, Mapping

import torch

from ..errors import CheckpointError, InputError

logger = logging.getLogger(__name__)

WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net", "network")
_PREFIXES = ("module.", "model.")
LFS_POINTER_PREFIX = b"version https://git-lfs.github.com/spec/v1"
_HTML_PREFIXES = (b"<!doctype html", b"<html", b"<?xml", b"<head", b"<body")


@dataclasses.dataclass(frozen=True)
class CheckpointFile:
    """What a file is, from its first bytes: ``kind`` is one of ``missing``, ``directory``, ``empty``,
    ``lfs-pointer``, ``html``, ``safetensors``, ``torch-zip``, ``torch-pickle``, ``unknown``."""

    path: Path
    kind: str
    size: int
    head: bytes = b""

    @property
    def is_weights(self) -> bool:
        return self.kind in ("safetensors", "torch-zip", "torch-pickle")

    def problem(self) -> str | None:
        """What is wrong with the file and how to fix it; None for a file that looks like weights."""
        p = self.path
        if self.kind == "missing":
            return f"{p} does not exist"
        if self.kind == "directory":
            return f"{p} is a folder, not a checkpoint file"
        if self.kind == "empty":
            return f"{p} is empty (0 bytes): an interrupted download or copy; download the file again"
        if self.kind == "lfs-pointer":
            fields = dict(line.split(" ", 1) for line in self.head.decode("utf-8", "replace").splitlines() if " " in line)
            real = f" (the real file: {fields['size']} bytes, {fields.get('oid', '')})" if "size" in fields else ""
            return (f"{p} is a Git LFS pointer ({self.size} bytes){real}, not the weights: the repository was cloned "
                    f"without its LFS files. Run `git lfs install && git lfs pull` in that repository (or download "
                    f"the file itself from the release page)")
        if self.kind == "html":
            return (f"{p} is an HTML page ({self.size} bytes), not a checkpoint: the download saved an error, login "
                    f"or confirmation page. Download the file again from its direct link (for Google Drive or the "
                    f"Hub, with the site's own download command)")
        if self.kind == "unknown":
            return (f"{p}: neither a safetensors file nor a PyTorch checkpoint (.pth / .pth.tar): {self.size} bytes "
                    f"starting with {self.head[:16]!r}; it may be truncated, or another file renamed")
        return None


def sniff_checkpoint(path: str | Path) -> CheckpointFile:
    """Classify ``path`` by its first bytes (nothing is loaded)."""
    p = Path(path)
    if not p.exists():
        return CheckpointFile(p, "missing", 0)
    if p.is_dir():
        return CheckpointFile(p, "directory", 0)
    size = p.stat().st_size
    with open(p, "rb") as f:
        head = f.read(512)
    if size == 0:
        return CheckpointFile(p, "empty", 0)
    if head.startswith(LFS_POINTER_PREFIX):
        return CheckpointFile(p, "lfs-pointer", size, head)
    if head.lstrip().lower().startswith(_HTML_PREFIXES):
        return CheckpointFile(p, "html", size, head)
    if head.startswith(b"PK"):
        return CheckpointFile(p, "torch-zip", size, head)
    if head[:1] == b"\x80":
        return CheckpointFile(p, "torch-pickle", size, head)
    if len(head) >= 9 and head[8:9] == b"{":  # safetensors: u64 header length, then a JSON object
        return CheckpointFile(p, "safetensors", size, head)
    return CheckpointFile(p, "unknown", size, head)


def ensure_weights_file(path: str | Path) -> CheckpointFile:
    """:func:`sniff_checkpoint`, raising :class:`CheckpointError` (or :class:`InputError` when missing) for a file
    that is not weights, with what it is and the fix."""
    info = sniff_checkpoint(path)
    if info.kind == "missing":
        raise InputError(f"checkpoint {info.path} does not exist")
    problem = info.problem()
    if problem is not None:
        raise CheckpointError(problem)
    return info


def _safetensors_shapes(path: Path, size: int) -> dict[str, tuple[int, ...]]:
    """Key -> shape from a safetensors header, checking the header and the data fit in the file."""
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        if n > size - 8:
            raise CheckpointError(f"{path}: truncated safetensors file ({size} bytes; its header alone claims {n})")
        try:
            header = json.loads(f.read(n))
        except (ValueError, UnicodeDecodeError) as exc:
            raise CheckpointError(f"{path}: corrupt safetensors header ({exc})") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: corrupt safetensors header (not a JSON object)")
    shapes, end = {}, 0
    for key, meta in header.items():
        if key == "__metadata__":
            continue
        try:
            shapes[key] = tuple(int(d) for d in meta["shape"])
            end = max(end, int(meta["data_offsets"][1]))
        except (KeyError, TypeError, ValueError, IndexError):
            raise CheckpointError(f"{path}: corrupt safetensors header (entry {key!r})") from None
    if 8 + n + end > size:
        raise CheckpointError(f"{path}: truncated safetensors file ({size} bytes; its tensors need {8 + n + end}); "
                              f"download it again")
    return shapes


def checkpoint_shapes(path: str | Path) -> dict[str, tuple[int, ...]]:
    """The state dict's keys and shapes (unwrapped, unprefixed), reading as little as possible: the header of a
    safetensors file, a memory-mapped weights-only ``torch.load`` of a zip checkpoint (tensors not read).
    Raises :class:`CheckpointError` naming what the file is when it is not weights, or is truncated."""
    info = ensure_weights_file(path)
    if info.kind == "safetensors":
        return {k: v for k, v in _shapes_unprefixed(_safetensors_shapes(info.path, info.size)).items()}
    if info.kind == "torch-zip":
        import zipfile

        try:
            with zipfile.ZipFile(info.path) as zf:
                zf.namelist()
        except zipfile.BadZipFile:
            raise CheckpointError(f"{info.path}: truncated or corrupt PyTorch checkpoint ({info.size} bytes; its zip "
                                  f"directory is unreadable); download it again") from None
    state = _unwrap(_torch_load_weights_only(info.path, mmap=info.kind == "torch-zip"), info.path)
    return {k: tuple(v.shape) for k, v in strip_prefixes(state).items()}


def _shapes_unprefixed(shapes: dict[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
    for prefix in _PREFIXES:
        if shapes and all(k.startswith(prefix) for k in shapes):
            shapes = {k[len(prefix):]: v for k, v in shapes.items()}
    return shapes


def compare_keys(expected: Mapping[str, tuple[int, ...]], found: Mapping[str, tuple[int, ...]], *,
                 architecture: str, source: str) -> str | None:
    """The mismatch between a model's and a checkpoint's keys and shapes, as a message (None when they fit)."""
    missing = [k for k in expected if k not in found]  # in module order, easier to read than sorted
    unexpected = [k for k in found if k not in expected]
    wrong = [k for k in expected if k in found and tuple(expected[k]) != tuple(found[k])]
    if not (missing or unexpected or wrong):
        return None

    def fmt(keys: list[str], limit: int = 30) -> str:
        more = f", ... ({len(keys) - limit} more)" if len(keys) > limit else ""
        return ", ".join(keys[:limit]) + more
    parts = [f"{source}: the checkpoint's keys do not fit the {architecture} architecture."]
    if missing:
        parts.append(f"Missing keys ({len(missing)}): {fmt(missing)}.")
    if unexpected:
        parts.append(f"Unexpected keys ({len(unexpected)}): {fmt(unexpected)}.")
    if wrong:
        parts.append("Shape mismatches: " + fmt([f"{k} checkpoint {tuple(found[k])} vs model "
                                                 f"{tuple(expected[k])}" for k in wrong]) + ".")
    parts.append("Check that the checkpoint is for this architecture (csrnet, dmcount or sasnet).")
    return " ".join(parts)


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


def _torch_load_weights_only(path: Path, *, mmap: bool = False) -> Any:
    try:
        with torch.serialization.safe_globals(_numpy_safe_globals()):
            return torch.load(str(path), map_location="cpu", weights_only=True, mmap=mmap)
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


def weights_only_refusal(exc: BaseException, source: str | os.PathLike, what: str) -> CheckpointError | None:
    """Our refusal for a ``torch.load(weights_only=True)`` failure raised through a library (transformers'
    ``from_pretrained`` of a ``pytorch_model.bin`` that pickles more than tensors), else None.

    One line: the file, the global it needs, and how to convert it once to safetensors if it is trusted."""
    import re

    seen, e = set(), exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, pickle.UnpicklingError) or "Weights only load failed" in str(e):
            break
        e = e.__cause__ or e.__context__
    else:
        return None
    if e is None:
        return None
    found = re.search(r"GLOBAL ([\w.]+)", str(e))
    folder = Path(source)
    files = sorted(folder.glob("*.bin")) + sorted(folder.glob("*.pt*")) if folder.is_dir() else [folder]
    path = files[0] if files else folder
    needs = f" (it pickles {found.group(1)})" if found else ""
    return CheckpointError(
        f"{what}: {path} needs more than weights to load{needs}; promptmix only loads weights (torch.load with "
        f"weights_only=True, or .safetensors). If you trust the file, convert it once: "
        f"`safetensors.torch.save_file(torch.load('{path.name}', weights_only=False), 'model.safetensors')` beside "
        f"its config.json (remove {path.name}), then give that folder")


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
    info = ensure_weights_file(path)  # LFS pointers, HTML pages, empty files: named, with the fix
    is_torch = info.kind in ("torch-zip", "torch-pickle")
    if info.kind == "safetensors":
        _safetensors_shapes(path, info.size)  # a truncated file is named as such
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
    problem = compare_keys({k: tuple(v.shape) for k, v in expected.items()},
                           {k: tuple(v.shape) for k, v in state.items()}, architecture=architecture, source=source)
    if problem is not None:
        raise CheckpointError(problem)
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()}, strict=True)
