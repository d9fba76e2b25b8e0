"""Typed configs from YAML and ``key=value`` overrides.

Each concern declares a small ``@dataclass`` whose fields carry a help string
(``field(default=..., metadata={"help": ...})``, written with :func:`option`) and validates itself
in ``__post_init__``. This module turns nested dicts (from YAML) into those dataclasses, applies
command-line overrides such as ``grpo.loss.kl_coef=0.01``, and reports every mistake as a
:class:`~mgs.errors.ConfigError` naming the key and what to write instead. It is written by hand
because the libraries that do this (Hydra, OmegaConf, pydantic) bring a second config language or a
heavy dependency for what is ~150 lines here.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar, Union

import yaml

from mgs.errors import ConfigError

T = TypeVar("T")
_MISSING = dataclasses.MISSING


def option(default: Any = _MISSING, *, help: str, default_factory: Any = _MISSING) -> Any:
    """A dataclass field with a help string (shown by ``mgs <cmd> --help-config``)."""
    kwargs: dict[str, Any] = {"metadata": {"help": help}}
    if default_factory is not _MISSING:
        kwargs["default_factory"] = default_factory
    elif default is not _MISSING:
        kwargs["default"] = default
    return dataclasses.field(**kwargs)


def yaml_error_line(exc: Exception) -> str:
    """PyYAML's error in one line: ``line L, column C: PROBLEM`` (its own message spans several
    lines with a caret drawing, which breaks the one-line error contract)."""
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    mark = getattr(exc, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    context = getattr(exc, "context", None)
    return f"{where}{problem}" + (f" ({context})" if context else "")


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping; a missing, unreadable, binary, duplicate-key or non-mapping file is a
    ConfigError naming the file."""
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"config file {str(p)!r} is a directory; pass the path of a YAML file")
    if not p.is_file():
        raise ConfigError(f"config file {str(p)!r} does not exist; pass the path of a YAML file")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"config file {str(p)!r} is not UTF-8 text (byte {exc.start} cannot be decoded); "
            "pass a YAML file, not a binary one"
        ) from None
    except OSError as exc:
        raise ConfigError(
            f"config file {str(p)!r} cannot be read ({exc.strerror or exc}); check its permissions"
        ) from None
    try:
        data = safe_load_unique(text)
    except DuplicateKeyError as exc:
        raise ConfigError(f"config file {str(p)!r} {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(
            f"config file {str(p)!r} is not valid YAML ({yaml_error_line(exc)}); fix that line"
        ) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file {str(p)!r} must hold a mapping of keys to values, got {type(data).__name__}"
        )
    return data


class DuplicateKeyError(yaml.YAMLError):
    """A YAML mapping names the same key twice (PyYAML would silently keep the last value)."""

    def __init__(self, key: object, first_line: int, line: int) -> None:
        where = f"line {line}" if line == first_line else f"lines {first_line} and {line}"
        super().__init__(f"sets key {key!r} twice ({where}); keep one of them")


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a mapping holding the same key twice.

    Only keys written in the mapping itself count: a key that overrides one merged in with
    ``<<: *anchor`` is YAML's intended use, not a duplicate.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: PyYAML's own error names it
                continue
            if first is not None:
                raise DuplicateKeyError(key, first, line)
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def safe_load_unique(text: str) -> Any:
    """``yaml.safe_load`` that raises :class:`DuplicateKeyError` on a key written twice."""
    return yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader: plain types only


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"grpo.loss.kl_coef=0.01"`` -> ``(["grpo", "loss", "kl_coef"], 0.01)``; the value is
    parsed as YAML."""
    if "=" not in text:
        raise ConfigError(
            f"override {text!r} must look like key=value, e.g. grpo.loss.kl_coef=0.01"
        )
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {text!r} has an empty key; write e.g. rollout.sampling.n=4")
    try:
        value = safe_load_unique(raw) if raw.strip() else ""
    except DuplicateKeyError as exc:
        raise ConfigError(f"override {text!r} {exc}") from None
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return a copy of ``data`` with each ``a.b.c=value`` override set (creating sub-mappings)."""
    out = _deep_copy(data)
    for text in overrides:
        path, value = parse_override(text)
        node = out
        for part in path[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(
                    f"override {text!r}: {part!r} is a value, not a section, so it has no sub-keys"
                )
            node = child
        node[path[-1]] = value
    return out


def from_dict(cls: type[T], data: Any, where: str = "") -> T:
    """Build dataclass ``cls`` from a nested mapping, checking keys and types."""
    if isinstance(data, cls):
        return data
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'} must be a mapping of keys to values, got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(
                f"unknown config key {_join(where, key)!r}{hint} "
                f"(valid keys here: {', '.join(fields)})"
            )
        kwargs[key] = _convert(hints[key], value, _join(where, key))
    missing = [
        name
        for name, f in fields.items()
        if name not in kwargs and f.default is _MISSING and f.default_factory is _MISSING
    ]
    if missing:
        raise ConfigError(
            f"missing required config key(s): {', '.join(_join(where, m) for m in missing)}"
        )
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        if where and not str(exc).startswith(where):
            raise ConfigError(f"{where}: {exc}") from None
        raise


def to_dict(obj: Any) -> Any:
    """Dataclass (nested) -> plain dict/list/scalars, suitable for YAML or JSON."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


def describe(cls: type, prefix: str = "") -> list[tuple[str, str, str]]:
    """Every field of ``cls`` (recursively) as ``(dotted key, default, help)`` rows for docs."""
    rows: list[tuple[str, str, str]] = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key = _join(prefix, f.name)
        sub = _dataclass_in(hints[f.name])
        if sub is not None:
            if f.default is None:  # an optional section, off by default: say so, then its keys
                rows.append((key, "None", f.metadata.get("help", "")))
            rows.extend(describe(sub, key))
            continue
        if f.default is not _MISSING:
            default = repr(f.default)
        elif f.default_factory is not _MISSING:
            default = repr(f.default_factory())
        else:
            default = "(required)"
        rows.append((key, default, f.metadata.get("help", "")))
    return rows


# ----------------------------------------------------------------------------- internals


def _join(where: str, key: object) -> str:
    return f"{where}.{key}" if where else str(key)


def _deep_copy(data: dict[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy(v) if isinstance(v, dict) else v for k, v in data.items()}


def _dataclass_in(tp: Any) -> type | None:
    if dataclasses.is_dataclass(tp):
        return tp
    if _is_union(tp):
        for arg in typing.get_args(tp):
            if dataclasses.is_dataclass(arg):
                return arg
    return None


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (Union, types.UnionType)


def _convert(tp: Any, value: Any, where: str) -> Any:
    if tp is Any:
        return value
    origin = typing.get_origin(tp)
    if _is_union(tp):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(arg, value, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(
            errors[0] if len(errors) == 1 else f"{where}: {value!r} fits none of {tp}"
        )
    if origin is typing.Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            raise ConfigError(
                f"{where} must be one of {', '.join(repr(a) for a in allowed)}, got {value!r}"
            )
        return value
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list, got {value!r}; write e.g. [a, b]")
        (item,) = typing.get_args(tp)[:1] or (Any,)
        items = [_convert(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a mapping, got {value!r}")
        _, val_tp = typing.get_args(tp) or (Any, Any)
        return {k: _convert(val_tp, v, f"{where}.{k}") for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where} must be true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{where} must be an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML reads 1e-6 as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{where} must be a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{where} must be a string, got {value!r}")
    if tp is Path:
        if isinstance(value, (str, Path)):
            return Path(value)
        raise ConfigError(f"{where} must be a path, got {value!r}")
    return value
