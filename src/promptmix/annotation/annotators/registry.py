"""Annotator kinds by name, and the ``--annotator SPEC`` grammar.

A SPEC is one of::

    [NAME:]FOLDER_OR_HUB_ID      a folder (or Hub repo) whose config.json says what it is:
                                   {"architecture": "csrnet"|"dmcount"|"sasnet", ...}  counting (our format)
                                   transformers "...ForDepthEstimation"              depth
                                   transformers "...ForImageClassification"          classification
                                   transformers CLIP (model_type "clip")             CLIP zero-shot
    [NAME:]KIND=ARGUMENT         a registered kind with its argument:
                                   csrnet=CSRNet_B.pth.tar, dmcount=model_qnrf.pth, sasnet=SHHB.pth
                                   (an author's raw checkpoint, or a folder), clip-zeroshot=ID_OR_PATH

``NAME:`` (letters, digits, ``_ . -``; on Windows two characters or more, so ``C:\\`` stays a path) sets
the annotator's name, which names its output folder ``RUN/annotations/NAME`` and must be unique
in a run. Without it the name is the kind for ``KIND=ARGUMENT`` specs (``csrnet``,
``zeroshot-<model>`` for CLIP) and the folder's / repo's base name otherwise.
Example: ``--annotator shtb:sasnet=SHHB.pth --annotator shta:sasnet=SHHA.pth``.

The built-in kinds are listed in :data:`BUILTIN_KINDS` (module paths, imported when a kind is used;
nothing registers itself on import, so a module that fails to import is named as such). Add your own
with :func:`register_annotator`; the decorated object is an
:class:`~promptmix.annotation.annotators.base.Annotator` subclass with a ``from_spec`` classmethod, or a
function, called as ``factory(argument, name=..., device=..., dtype=..., batch_size=...,
class_names=..., spec=..., revision=..., resolved=...)`` (``resolved`` is a
:class:`~promptmix.utils.model_source.ModelSource` when the folder was already resolved).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path
from typing import Any, Callable, Sequence

from ...errors import InputError
from ...utils.model_source import resolve_model

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# on Windows a one-letter prefix is a drive (C:\...), not a name
_NAME_PREFIX_RE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9_.-]+):(.+)$" if os.name == "nt"
                             else r"^([A-Za-z0-9][A-Za-z0-9_.-]*):(.+)$")
_KIND_RE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9_.-]*)=(.*)$")


@dataclasses.dataclass(frozen=True)
class _Kind:
    name: str
    factory: str | Callable[..., Any]  # "module:attribute" (imported on use) or the factory itself
    task: str | None  # None when the kind decides per model

    def load(self) -> Callable[..., Any]:
        if callable(self.factory):
            return self.factory
        import importlib

        module, _, attr = self.factory.partition(":")
        try:
            obj: Any = importlib.import_module(module)
        except ImportError as exc:
            raise InputError(f"annotator kind {self.name!r} could not be loaded: importing {module} failed "
                             f"({type(exc).__name__}: {exc})") from exc
        for part in attr.split("."):
            obj = getattr(obj, part)
        return obj


_A = "promptmix.annotation.annotators."
#: the built-in annotator kinds (``KIND=ARGUMENT`` specs and the kinds ``detect_kind`` returns)
BUILTIN_KINDS: dict[str, _Kind] = {k.name: k for k in (
    _Kind("csrnet", _A + "counting:csrnet_from_spec", "counting"),
    _Kind("dmcount", _A + "counting:dmcount_from_spec", "counting"),
    _Kind("sasnet", _A + "counting:sasnet_from_spec", "counting"),
    _Kind("transformers-depth", _A + "depth:DepthAnnotator.from_spec", "depth"),
    _Kind("transformers-classification", _A + "classification:ImageClassifierAnnotator.from_spec", "classification"),
    _Kind("clip-zeroshot", _A + "classification:ClipZeroShotAnnotator.from_spec", "classification"),
)}
_REGISTRY: dict[str, _Kind] = dict(BUILTIN_KINDS)


def register_annotator(name: str, *, task: str | None = None) -> Callable:
    """Register an annotator kind of your own under ``name`` (used as ``NAME=ARGUMENT`` in a SPEC)."""
    key = name.lower()

    def deco(obj):
        factory = obj.from_spec if isinstance(obj, type) else obj
        _REGISTRY[key] = _Kind(key, factory, task if task is not None else getattr(obj, "task", None) or None)
        return obj

    return deco


def registered_annotators() -> list[str]:
    return sorted(_REGISTRY)


@dataclasses.dataclass(frozen=True)
class ParsedSpec:
    spec: str
    name: str | None  # from NAME:
    kind: str | None  # registered kind, or None for a folder / Hub id
    target: str  # the argument or the folder / Hub id


def parse_spec(spec: str) -> ParsedSpec:
    """Split a SPEC into its optional name, optional kind and target (see the module docstring)."""
    text = spec.strip()
    if not text:
        raise InputError("annotator spec is empty; expected FOLDER, HUB_ID, KIND=ARGUMENT or NAME:SPEC")
    name = None
    m = _NAME_PREFIX_RE.match(text)
    if m and not Path(text).exists():
        name, text = m.group(1), m.group(2)
    kind = None
    m = _KIND_RE.match(text)
    if m and not Path(text).exists():
        if m.group(1).lower() in _REGISTRY:
            kind, text = m.group(1).lower(), m.group(2)
        else:
            raise InputError(f"annotator spec {spec!r}: unknown kind {m.group(1)!r}; known kinds are "
                             f"{', '.join(sorted(_REGISTRY))} (or give a folder or Hub id)")
    return ParsedSpec(spec=spec, name=name, kind=kind, target=text)


def _sanitize(name: str) -> str:
    out = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-._")
    return out or "annotator"


def default_name(parsed: ParsedSpec) -> str:
    """The annotator's name when the SPEC gives none."""
    if parsed.name:
        return parsed.name
    base = Path(parsed.target.rstrip("/\\")).name or parsed.target
    if parsed.kind == "clip-zeroshot":
        return _sanitize(f"zeroshot-{base}")
    if parsed.kind:
        return parsed.kind
    return _sanitize(base)


def _read_config(folder: Path) -> dict:
    path = folder / "config.json"
    if not path.exists():
        raise InputError(f"{folder} has no config.json; an annotator folder is a counting model (config.json with "
                         f"'architecture') or a transformers model; for an author's checkpoint use ARCH=FILE")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(f"{path} is not valid JSON: {exc}") from None


def detect_kind(folder: str | Path) -> str:
    """The registered kind of a model folder, from its ``config.json``."""
    folder = Path(folder)
    if folder.is_file():
        raise InputError(f"{folder} is a file; give a raw checkpoint as ARCH=FILE "
                         f"(ARCH one of csrnet, dmcount, sasnet) or a model folder")
    cfg = _read_config(folder)
    if "architecture" in cfg:
        arch = str(cfg["architecture"]).lower()
        if arch not in _REGISTRY:
            raise InputError(f"{folder}/config.json names architecture {arch!r}; known: "
                             f"{', '.join(sorted(_REGISTRY))}")
        return arch
    from transformers.models.auto.modeling_auto import (MODEL_FOR_DEPTH_ESTIMATION_MAPPING_NAMES,
                                                        MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES)

    model_type = cfg.get("model_type")
    archs = list(cfg.get("architectures") or [])
    depth_classes = set(MODEL_FOR_DEPTH_ESTIMATION_MAPPING_NAMES.values())
    cls_classes = {v for vs in MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES.values()
                   for v in ((vs,) if isinstance(vs, str) else vs)}
    if any(a in depth_classes or a.endswith("ForDepthEstimation") for a in archs):
        return "transformers-depth"
    if any(a in cls_classes or a.endswith("ForImageClassification") for a in archs):
        return "transformers-classification"
    if model_type == "clip" or any(a == "CLIPModel" for a in archs):
        return "clip-zeroshot"
    if not archs and model_type in MODEL_FOR_DEPTH_ESTIMATION_MAPPING_NAMES:
        return "transformers-depth"
    raise InputError(f"{folder}/config.json (model_type {model_type!r}, architectures {archs}) is not an annotator "
                     f"promptmix knows: expected a counting model ('architecture' key), a transformers "
                     f"depth-estimation or image-classification model, or a CLIP model")


def build_annotator(spec: str, *, name: str | None = None, class_names: Sequence[str] | None = None,
                   device: Any = None, dtype: Any = None, batch_size: int = 8, revision: str | None = None):
    """Build the annotator a SPEC describes (weights not loaded yet: call ``.load()`` or use it as a context
    manager)."""
    parsed = parse_spec(spec)
    name = name or default_name(parsed)
    if not NAME_RE.match(name):
        raise InputError(f"annotator name {name!r}: expected letters, digits, '_', '.', '-' (starting with a letter "
                         f"or digit)")
    common = dict(name=name, device=device, dtype=dtype, batch_size=batch_size, class_names=class_names, spec=spec)
    if parsed.kind is not None:
        return _REGISTRY[parsed.kind].load()(parsed.target, revision=revision, resolved=None, **common)
    source = resolve_model(parsed.target, revision, what="annotator")
    kind = detect_kind(source.path)
    return _REGISTRY[kind].load()(source.path, revision=revision, resolved=source, **common)
