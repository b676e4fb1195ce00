"""Typed, self-validating stage configs.

Each stage declares a dataclass deriving from :class:`StageConfig`. Field
metadata carries the ``help`` text (used for ``--help`` and docs) and
``runtime=True`` for settings that do not change the result (batch size,
device, progress) and are therefore left out of :meth:`StageConfig.config_hash`,
the cache key of a stage (as distilabel's signature mixin does).

``validate()`` is called from ``__post_init__``; it raises :class:`ConfigError`
naming the key, the value found, and what is allowed.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Iterable, Mapping, TypeVar

import yaml

from .errors import ConfigError
from .utils.hashing import jsonable, stable_hash

C = TypeVar("C", bound="StageConfig")


def field(default: Any = dataclasses.MISSING, *, help: str = "", runtime: bool = False,
          default_factory: Any = dataclasses.MISSING, choices: Iterable[Any] | None = None,
          flags: Iterable[str] = (), metavar: str | None = None, positional: bool = False) -> Any:
    """A dataclass field with ``help``, ``runtime`` and optional ``choices`` metadata.

    ``help`` is its ``--help`` text and its documentation; ``flags`` are extra command-line spellings
    besides ``--field-name`` (``promptmix.cli_args`` builds every flag from the fields); ``metavar`` names
    its value in ``--help``; ``positional`` makes it a positional argument of its command.
    """
    meta: dict[str, Any] = {"help": help, "runtime": runtime}
    if choices is not None:
        meta["choices"] = tuple(choices)
    if flags:
        meta["flags"] = tuple(flags)
    if metavar is not None:
        meta["metavar"] = metavar
    if positional:
        meta["positional"] = True
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


@dataclasses.dataclass
class StageConfig:
    """Base class: validation hooks, dict/YAML round trip and a stable hash."""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            choices = f.metadata.get("choices")
            value = getattr(self, f.name)
            if choices is not None and value not in choices:
                raise ConfigError(f"{self._key(f.name)}: expected one of {', '.join(map(repr, choices))}; got {value!r}")
        self.validate()

    # -- hooks -------------------------------------------------------------------------------------
    def validate(self) -> None:
        """Override to check values; raise :class:`ConfigError` via :meth:`fail`."""

    _section: typing.ClassVar[str] = ""

    def _key(self, name: str) -> str:
        return f"{self._section}.{name}" if self._section else name

    def fail(self, name: str, expected: str) -> typing.NoReturn:
        raise ConfigError(f"{self._key(name)}: expected {expected}; got {getattr(self, name)!r}")

    # -- (de)serialisation -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return jsonable(self)

    @classmethod
    def from_dict(cls: type[C], data: Mapping[str, Any] | None, *, section: str = "") -> C:
        data = dict(data or {})
        names = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(names))
        prefix = f"{section}." if section else ""
        if unknown:
            from .utils.suggest import did_you_mean

            raise ConfigError(f"{prefix}{unknown[0]}: unknown key; allowed keys are {', '.join(sorted(names))}"
                              f"{did_you_mean(unknown[0], names)}")
        hints = typing.get_type_hints(cls)
        kwargs = {}
        for key, value in data.items():
            kwargs[key] = _coerce(hints.get(key), value, f"{prefix}{key}")
        try:
            obj = cls(**kwargs)
        except TypeError as exc:
            missing = [n for n, f in names.items() if f.default is dataclasses.MISSING
                       and f.default_factory is dataclasses.MISSING and n not in data]
            if missing:
                raise ConfigError(f"{prefix}{missing[0]}: required key is missing") from exc
            raise
        except ConfigError as exc:
            if section and not str(exc).startswith(prefix):
                raise ConfigError(f"{prefix}{exc}") from None
            raise
        return obj

    @classmethod
    def from_yaml(cls: type[C], path: str | Path, *, section: str = "") -> C:
        """The config in the YAML file ``path``; every error names the file."""
        try:
            return cls.from_dict(read_yaml_mapping(path), section=section)
        except ConfigError as exc:
            if str(path) in str(exc):
                raise
            raise ConfigError(f"config file {path}: {exc}") from None

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def save(self, path: str | Path) -> Path:
        from .utils.io import write_text_atomic

        return write_text_atomic(path, self.to_yaml())

    def hashed_dict(self) -> dict[str, Any]:
        """The settings that change results: every field not marked ``runtime``."""
        return {f.name: jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)
                if not f.metadata.get("runtime", False)}

    def config_hash(self) -> str:
        return stable_hash(self.hashed_dict())


def read_yaml_mapping(path: str | Path, section: str | None = None) -> dict[str, Any]:
    """Read a YAML config file whose top level must be a mapping; errors name the file and the problem.

    With ``section``, a file that has that key holding a mapping (a whole-pipeline config) gives that
    mapping; any other file is taken as the section itself (a stage-only config).
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: expected a mapping at the top level, got {type(data).__name__}")
    if section is not None and isinstance(data.get(section), dict):
        return dict(data[section])
    return data


def _coerce(hint: Any, value: Any, key: str) -> Any:
    """Light coercion of YAML values to the annotated type (tuples from lists, Paths from str, nested configs)."""
    if hint is None or value is None:
        return value
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1:
            return _coerce(args[0], value, key)
        return value
    if isinstance(hint, type) and issubclass(hint, StageConfig):
        if isinstance(value, hint):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return hint.from_dict(value, section=key)
    if hint is Path and isinstance(value, str):
        return Path(value)
    if origin in (list, tuple) and isinstance(value, (list, tuple)) and typing.get_args(hint)[:1] == (float,):
        value = [_coerce(float, v, f"{key}[{i}]") for i, v in enumerate(value)]  # YAML reads 1e-4 as a string
    if origin is tuple and isinstance(value, list):
        return tuple(value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str):
        try:
            return float(value)  # YAML 1.1 reads 1e-4 (no dot) as a string
        except ValueError:
            pass
    if hint is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)  # YAML reads `size: 512` or `revision: 1234` as a number: the setting checks the text
    _check_scalar(hint, value, key)
    if origin in (list, tuple) and typing.get_args(hint):
        inner = typing.get_args(hint)[0]
        if isinstance(inner, type) and issubclass(inner, StageConfig) and isinstance(value, list):
            return [_coerce(inner, v, f"{key}[{i}]") for i, v in enumerate(value)]
    return value


_SCALAR_EXPECTED = {int: "an integer", float: "a number", bool: "true or false", str: "a string",
                    Path: "a path (string)"}


def _check_scalar(hint: Any, value: Any, key: str) -> None:
    """Reject a YAML value of the wrong basic type with a message naming the key (e.g. ``steps: abc``)."""
    if hint not in _SCALAR_EXPECTED:
        if typing.get_origin(hint) in (list, tuple) and not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list; got {value!r}")
        return
    ok = {int: isinstance(value, int) and not isinstance(value, bool),
          float: isinstance(value, float),
          bool: isinstance(value, bool),
          str: isinstance(value, str),
          Path: isinstance(value, (str, Path))}[hint]
    if not ok:
        raise ConfigError(f"{key}: expected {_SCALAR_EXPECTED[hint]}; got {value!r}")
