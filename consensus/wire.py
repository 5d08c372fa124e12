"""Typed conversion between frozen dataclasses and plain values (dicts, lists, scalars).

Plain values are what msgpack and JSON carry. Every value that crosses the network, the
Raft log or the HTTP API goes through `from_plain`, which checks types field by field and
names the offending field in its error, so bad input becomes a clear 400 and never a crash.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from functools import lru_cache
from typing import Any, Union


class WireError(ValueError):
    """A value did not match its declared type. `field` is a dotted path like `ports[0].target`."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field or '<root>'}: {reason}")
        self.field = field or "<root>"
        self.reason = reason


def to_plain(value: Any) -> Any:
    """Dataclasses become dicts (fields in declaration order), tuples become lists."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: to_plain(v) for k, v in value.items()}
    return value


@lru_cache(maxsize=None)
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


@lru_cache(maxsize=None)
def _fields(cls: type) -> tuple[dataclasses.Field, ...]:
    return tuple(f for f in dataclasses.fields(cls) if f.init)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false",
               bytes: "bytes", dict: "an object", list: "a list"}


def from_plain(tp: Any, value: Any, path: str = "", *, strict: bool = True) -> Any:
    """Build a value of type `tp` from plain data, raising WireError naming the bad field.

    With `strict`, keys that the dataclass does not declare are errors (unknown fields are
    never silently dropped).
    """
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin is Union or origin is types.UnionType:
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return from_plain(arg, value, path, strict=strict)
            except WireError as exc:
                errors.append(exc)
        raise errors[0] if len(errors) == 1 else WireError(path, f"unexpected value {value!r}")
    if origin is typing.Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            raise WireError(path, f"must be one of {', '.join(map(repr, allowed))}, not {value!r}")
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise WireError(path, f"must be an object, not {type(value).__name__}")
        hints = _hints(tp)
        known = {f.name for f in _fields(tp)}
        if strict:
            unknown = sorted(str(k) for k in value if k not in known)
            if unknown:
                raise WireError(_join(path, unknown[0]), "unknown field")
        kwargs = {}
        for f in _fields(tp):
            if f.name in value:
                kwargs[f.name] = from_plain(hints[f.name], value[f.name], _join(path, f.name),
                                            strict=strict)
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise WireError(_join(path, f.name), "is required")
        try:
            return tp(**kwargs)
        except WireError:
            raise
        except (TypeError, ValueError) as exc:
            raise WireError(path, str(exc)) from None
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(value)
        except ValueError:
            allowed = ", ".join(repr(m.value) for m in tp)
            raise WireError(path, f"must be one of {allowed}, not {value!r}") from None
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise WireError(path, f"must be a list, not {type(value).__name__}")
        args = typing.get_args(tp)
        item = args[0] if args else Any
        items = [from_plain(item, v, f"{path}[{i}]", strict=strict) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise WireError(path, f"must be an object, not {type(value).__name__}")
        kt, vt = typing.get_args(tp) or (Any, Any)
        return {from_plain(kt, k, path, strict=strict): from_plain(vt, v, _join(path, str(k)), strict=strict)
                for k, v in value.items()}
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise WireError(path, f"must be a number, not {type(value).__name__}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise WireError(path, f"must be an integer, not {type(value).__name__}")
        return value
    if tp in (str, bool, bytes):
        if not isinstance(value, tp):
            raise WireError(path, f"must be {_TYPE_NAMES[tp]}, not {type(value).__name__}")
        return value
    raise WireError(path, f"unsupported type {tp!r}")
