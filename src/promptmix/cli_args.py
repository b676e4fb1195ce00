"""Command-line flags generated from a config dataclass, so a flag and its YAML key can never differ.

Every field of a :class:`~promptmix.config.StageConfig` becomes ``--field-name`` (plus the extra
spellings in its ``flags`` metadata) with the field's ``help`` and choices:

==========================  ==================================================================
field type                  flag
==========================  ==================================================================
``bool``                    ``--x`` / ``--no-x``
``int``, ``float``, ``str``  ``--x VALUE``; ``none`` / ``null`` for an optional number
``list[str]``               ``--x VALUE``, repeatable; added to the list of the ``--config`` file
``tuple[float, ...]``       ``--x V [V ...]``, replacing the file's list
``positional`` fields       a positional argument (``V [V ...]`` for a list)
``dict[str, list[str]]``    ``--x NAME=VALUE``, repeatable (values collected per name)
``dict[str, Any]``          ``--x KEY=VALUE``, repeatable (VALUE read as YAML)
a nested config             ``--parent-child ...`` for each of its fields; ``--parent`` sets its
                            ``enabled`` field when it has one
==========================  ==================================================================

Flags default to "not given", so a ``--config FILE.yaml`` value survives unless the flag is given.
:func:`config_from_args` merges the file (top level, or its ``section:`` of a pipeline config) and the
flags and builds the config, which validates itself. Only the standard library and the config
classes are imported here: building and parsing never imports torch or datasets.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Iterable, Mapping

from .config import StageConfig, read_yaml_mapping
from .errors import ConfigError

_NONE = ("none", "null")


def flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def _unwrap(hint: Any) -> tuple[Any, bool]:
    """(inner type, optional) of an annotation such as ``int | None``."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        optional = len(args) < len(typing.get_args(hint))
        return (args[0] if len(args) == 1 else str), optional
    return hint, False


def _is_config(hint: Any) -> bool:
    return isinstance(hint, type) and issubclass(hint, StageConfig)


def _scalar(kind: Any, optional: bool, flag: str):
    base = {int: int, float: float}.get(kind, str)

    def convert(text: str):
        if optional and text.strip().lower() in _NONE:
            return None
        try:
            return base(text)
        except ValueError:
            what = {int: "an integer", float: "a number"}[base]
            raise argparse.ArgumentTypeError(f"expected {what}{' or none' if optional else ''}; got {text!r}")
    convert.__name__ = getattr(base, "__name__", "value")
    return convert


def _pair(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE; got {text!r}")
    return name.strip(), value.strip()


def _help(f: dataclasses.Field, extra: str = "") -> str:
    text = f.metadata.get("help", "") + extra
    default = f.default if f.default is not dataclasses.MISSING else None
    if default not in (None, "", (), False) and not dataclasses.is_dataclass(default):
        text += f" (default: {default})"
    return text.replace("%", "%%")


def add_config_arguments(parser: argparse.ArgumentParser, config_class: type, *, skip: Iterable[str] = (),
                         prefix: str = "", group_title: str | None = None) -> None:
    """Add one flag per field of ``config_class`` (see the module docstring) to ``parser``."""
    skip = set(skip)
    hints = typing.get_type_hints(config_class)
    target = parser.add_argument_group(group_title) if group_title else parser
    for f in dataclasses.fields(config_class):
        if f.name in skip or f.name.startswith("_"):
            continue
        kind, optional = _unwrap(hints[f.name])
        dest = f"{prefix}{f.name}"
        flags = [flag_name(dest.replace("__", "_")), *f.metadata.get("flags", ())]
        if _is_config(kind):
            nested_fields = {g.name for g in dataclasses.fields(kind)}
            if "enabled" in nested_fields:
                target.add_argument(flag_name(f.name), dest=f"{dest}__enabled", action="store_const", const=True,
                                    default=argparse.SUPPRESS, help=f"{f.metadata.get('help', '')} (sets "
                                    f"{f.name}.enabled)".replace("%", "%%"))
            add_config_arguments(parser, kind, skip={"enabled"}, prefix=f"{dest}__",
                                 group_title=f"{f.name} settings ({kind.__name__})")
            continue
        if f.metadata.get("positional"):
            list_like = typing.get_origin(kind) in (list, tuple)
            target.add_argument(dest, nargs="+" if list_like else None, metavar=f.metadata.get("metavar"),
                                help=_help(f))
            continue
        kwargs: dict[str, Any] = {"dest": dest, "default": argparse.SUPPRESS, "help": _help(f)}
        choices = [c for c in f.metadata.get("choices", ()) if c is not None]
        metavar = f.metadata.get("metavar")
        origin = typing.get_origin(kind)
        if kind is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif origin is list:
            kwargs.update(action="append", metavar=metavar or "TEXT")
        elif origin is tuple:
            inner = (typing.get_args(kind) or (str,))[0]
            kwargs.update(nargs="+", type=_scalar(inner, False, flags[0]), metavar=metavar or "V")
        elif origin is dict:
            kwargs.update(action="append", type=_pair, metavar=metavar or "NAME=VALUE")
        else:
            kwargs["type"] = _scalar(kind, optional, flags[0])
            if choices:
                kwargs["choices"] = choices
            else:
                kwargs["metavar"] = metavar or f.name.upper()
        target.add_argument(*flags, **kwargs)


def _from_flags(config_class: type, args: argparse.Namespace, data: dict[str, Any], prefix: str = "") -> None:
    """Write the flags given in ``args`` over ``data`` (a YAML mapping), following the field types."""
    import yaml

    hints = typing.get_type_hints(config_class)
    given = vars(args)
    for f in dataclasses.fields(config_class):
        kind, _ = _unwrap(hints[f.name])
        dest = f"{prefix}{f.name}"
        if _is_config(kind):
            nested = dict(data.get(f.name) or {}) if isinstance(data.get(f.name), Mapping) else {}
            before = dict(nested)
            _from_flags(kind, args, nested, prefix=f"{dest}__")
            if f"{dest}__enabled" in given:
                nested["enabled"] = True
            if nested != before or f"{dest}__enabled" in given:
                if "enabled" in {g.name for g in dataclasses.fields(kind)} and "enabled" not in before:
                    nested.setdefault("enabled", True)  # a flag of a nested section turns it on
                data[f.name] = nested
            continue
        if dest not in given:
            continue
        value = given[dest]
        origin = typing.get_origin(kind)
        if origin is list and f.metadata.get("positional"):
            data[f.name] = list(value)
        elif origin is list:
            data[f.name] = list(data.get(f.name) or []) + list(value)
        elif origin is dict:
            inner = typing.get_args(kind)[1] if typing.get_args(kind) else Any
            merged = {k: (list(v) if isinstance(v, list) else v) for k, v in dict(data.get(f.name) or {}).items()}
            for name, text in value:
                if typing.get_origin(inner) is list:
                    if not text:
                        raise ConfigError(f"{flag_name(dest)}: expected NAME=VALUE with a value; got {name}=")
                    merged.setdefault(name, []).append(text)
                else:
                    try:
                        merged[name] = yaml.safe_load(text) if text else ""
                    except yaml.YAMLError as exc:
                        raise ConfigError(f"{flag_name(dest)} {name}={text}: VALUE is not valid YAML ({exc})") from None
            data[f.name] = merged
        elif origin is tuple:
            data[f.name] = list(value)
        elif kind is Path or (kind is str and value is not None):
            data[f.name] = value
        else:
            data[f.name] = value


def config_from_args(config_class: type, args: argparse.Namespace, *, section: str = "",
                     defaults: Mapping[str, Any] | None = None,
                     overrides: Mapping[str, Any] | None = None) -> StageConfig:
    """The config of ``--config FILE`` (when given) with every flag given written over it, validated.

    ``defaults`` (a command's own defaults, under the file) and ``overrides`` (values the command derives from
    its other flags, over everything) are optional.

    ``section``: the key of this config in a pipeline config file (a file with that key holding a mapping
    gives that mapping; any other file is the section itself), and the prefix of error messages.
    """
    data: dict[str, Any] = dict(defaults or {})
    config_file = getattr(args, "config", None)
    if config_file:
        data.update({str(k).replace("-", "_"): v
                     for k, v in read_yaml_mapping(config_file, section=section or None).items()})
    _from_flags(config_class, args, data)
    data.update(overrides or {})
    return config_class.from_dict(data, section=section)
