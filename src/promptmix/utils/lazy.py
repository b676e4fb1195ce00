"""Lazy package exports: ``from promptmix.builders import build_shanghaitech`` imports only what it names.

A package lists ``{name: relative module}`` and sets ``__getattr__ = lazy_exports(__name__, EXPORTS)``, so
importing the package (as ``promptmix --help`` does through the stage configs) loads none of its heavy
modules.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, Mapping


def lazy_exports(package: str, exports: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that imports ``exports[name]`` (relative to ``package``) on first use."""

    def __getattr__(name: str) -> Any:
        if name in exports:
            module = exports[name]
            return getattr(importlib.import_module(module if module.startswith(".") else f".{module}", package),
                           name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
