"""Typed configs: dataclass ⇄ dict ⇄ YAML, dotted command-line overrides (DESIGN principle 2).

Each component owns a small ``@dataclass`` config; a run config composes them as fields.
This module only converts and checks:

- ``from_dict(cls, d)`` builds a (nested) dataclass, **rejecting unknown keys** with the list
  of valid ones and **filling missing keys with defaults** (so checkpoints saved before a field
  was added still load).
- ``apply_overrides(cfg, ["model.d_model=512", "train.lr=3e-4"])`` sets dotted fields, parsing
  values with YAML's scalar rules and checking them against the field's type.
- ``load_yaml`` / ``save_yaml`` / ``to_dict``.

No ``eval``, no resolvers, no executable configs.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from .atomic import write_text_atomic
from .errors import UserError

T = TypeVar("T")


def to_dict(cfg: Any) -> dict:
    """A dataclass (nested) as plain JSON/YAML-ready data."""
    if not dataclasses.is_dataclass(cfg):
        raise TypeError(f"not a dataclass: {cfg!r}")
    return {f.name: _plain(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}


def _plain(v: Any) -> Any:
    if dataclasses.is_dataclass(v):
        return to_dict(v)
    if isinstance(v, tuple | list):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    return v


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def from_dict(cls: type[T], d: dict | None, where: str = "") -> T:
    """Build dataclass ``cls`` from ``d``; unknown keys raise, missing keys take defaults."""
    d = dict(d or {})
    if not isinstance(d, dict):
        raise UserError(f"config section {where or cls.__name__!r} must be a mapping")
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - set(names))
    if unknown:
        raise UserError(
            f"unknown config key(s) {', '.join(_join(where, k) for k in unknown)}; "
            f"valid keys{' in ' + where if where else ''}: {', '.join(names)}"
        )
    hints = _hints(cls)
    kwargs = {k: _coerce(hints[k], v, _join(where, k)) for k, v in d.items()}
    return cls(**kwargs)


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _coerce(tp: Any, v: Any, where: str) -> Any:
    """Check/convert value ``v`` for annotated type ``tp`` (dataclasses recurse)."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return v if isinstance(v, tp) else from_dict(tp, v, where)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if v is None and type(None) in args:
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(a, v, where)
            except UserError:
                continue
        raise UserError(f"config {where}: {v!r} is not a valid {tp}")
    if origin is typing.Literal:
        if v not in typing.get_args(tp):
            raise UserError(f"config {where}: {v!r} not one of {typing.get_args(tp)}")
        return v
    if origin in (list, tuple):
        if not isinstance(v, list | tuple):
            raise UserError(f"config {where}: expected a list, got {v!r}")
        args = typing.get_args(tp)
        inner = args[0] if args else Any
        out = [_coerce(inner, x, where) for x in v]
        return tuple(out) if origin is tuple else out
    if origin is dict or tp is Any:
        return v
    if tp is bool:
        if isinstance(v, bool):
            return v
        raise UserError(f"config {where}: expected true/false, got {v!r}")
    if tp is int:
        if isinstance(v, int) and not isinstance(v, bool):
            return v
        if isinstance(v, float) and v.is_integer():
            return int(v)
        raise UserError(f"config {where}: expected an integer, got {v!r}")
    if tp is float:
        if isinstance(v, int | float) and not isinstance(v, bool):
            return float(v)
        if isinstance(v, str):  # YAML 1.1 reads "2e-3" (no dot) as a string
            try:
                return float(v)
            except ValueError:
                pass
        raise UserError(f"config {where}: expected a number, got {v!r}")
    if tp is str:
        if isinstance(v, str):
            return v
        raise UserError(f"config {where}: expected a string, got {v!r}")
    return v


def apply_overrides(cfg: T, overrides: list[str]) -> T:
    """Return a copy of ``cfg`` with ``key.sub=value`` overrides applied (YAML scalars)."""
    d = to_dict(cfg)
    for item in overrides:
        if "=" not in item:
            raise UserError(f"override {item!r} must look like key.sub=value")
        key, text = item.split("=", 1)
        try:
            value = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError:
            value = text
        node = d
        parts = key.strip().split(".")
        for i, p in enumerate(parts[:-1]):
            if not isinstance(node.get(p), dict):
                valid = ", ".join(k for k, v in node.items() if isinstance(v, dict))
                raise UserError(
                    f"unknown config section {'.'.join(parts[: i + 1])!r}; valid: {valid}"
                )
            node = node[p]
        if parts[-1] not in node:
            raise UserError(f"unknown config key {key!r}; valid keys here: {', '.join(node)}")
        node[parts[-1]] = value
    return from_dict(type(cfg), d)


def load_yaml(cls: type[T], path: str | Path, overrides: list[str] | None = None) -> T:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file {str(path)!r} does not exist")
    try:
        d = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise UserError(f"config file {path} is not valid YAML: {err}") from None
    return apply_overrides(from_dict(cls, d), overrides or [])


def save_yaml(cfg: Any, path: str | Path) -> None:
    write_text_atomic(path, yaml.safe_dump(to_dict(cfg), sort_keys=False))
