"""Typed conversion between frozen dataclasses and plain values (dicts, lists, scalars).

Plain values are what msgpack and JSON carry. Every value that crosses the network, the
Raft log or the HTTP API goes through `from_plain`, which checks types field by field and
names the offending field in its error, so bad input becomes a clear 400 and never a crash.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import types
import typing
from collections.abc import Callable
from functools import cache
from typing import Any, TypeVar, Union, overload


class WireError(ValueError):
    """A value did not match its declared type. `field` is a dotted path like `ports[0].target`."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field or '<root>'}: {reason}")
        self.field = field or "<root>"
        self.reason = reason

    def under(self, path: str) -> WireError:
        """This error, raised by a converter given no path, placed at `path`. Converters pass
        no path down and place an error only when one is raised: building a path string
        for every value of a 100,000-row command cost more than checking the values."""
        inner = "" if self.field == "<root>" else self.field
        return WireError(
            inner and (path + inner if inner.startswith("[") else _join(path, inner)) or path,
            self.reason,
        )


def to_plain(value: Any) -> Any:
    """Dataclasses become dicts (fields in declaration order), tuples become lists."""
    cls = type(value)
    if cls in _PLAIN_SCALARS:
        return value
    try:
        names = _FIELD_NAMES[cls]
    except KeyError:
        names = _FIELD_NAMES[cls] = _field_names(cls)
    if names is not None:
        return {name: to_plain(getattr(value, name)) for name in names}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: to_plain(v) for k, v in value.items()}
    return value


# Snapshots and large commands convert 100k rows: look each class's shape up once, by type.
_PLAIN_SCALARS = frozenset({str, int, float, bool, bytes, type(None)})
_FIELD_NAMES: dict[type, tuple[str, ...] | None] = {}


def _field_names(cls: type) -> tuple[str, ...] | None:
    if dataclasses.is_dataclass(cls):
        return tuple(f.name for f in dataclasses.fields(cls))
    return None


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


_TYPE_NAMES = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "true or false",
    bytes: "bytes",
    dict: "an object",
    list: "a list",
}

Converter = Callable[[Any, str], Any]
T = TypeVar("T")


@overload
def from_plain(tp: type[T], value: object, path: str = "", *, strict: bool = True) -> T: ...
@overload
def from_plain(tp: object, value: object, path: str = "", *, strict: bool = True) -> Any: ...
def from_plain(tp: Any, value: Any, path: str = "", *, strict: bool = True) -> Any:
    """Build a value of type `tp` from plain data, raising WireError naming the bad field.

    With `strict`, keys that the dataclass does not declare are errors (unknown fields are
    never silently dropped).
    """
    return _converter(tp, strict)(value, path)


@cache
def _converter(tp: Any, strict: bool) -> Converter:
    """The conversion for `tp`, worked out once per type: checking a value then costs only
    the checks themselves, which matters for snapshots and commands of 100k rows."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return lambda value, path: value
    if origin is Union or origin is types.UnionType:
        return _union(typing.get_args(tp), strict)
    if origin is typing.Literal:
        return _literal(typing.get_args(tp))
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _dataclass(tp, strict)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return _enum(tp)
    if origin in (tuple, list):
        args = typing.get_args(tp)
        return _sequence(origin, args[0] if args else Any, strict)
    if origin is dict:
        kt, vt = typing.get_args(tp) or (Any, Any)
        return _mapping(kt, vt, strict)
    if tp is float:
        return _float
    if tp is int:
        return _int
    if tp in (str, bool, bytes):
        return _exactly(tp)
    return _unsupported(tp)


def _union(args: tuple[Any, ...], strict: bool) -> Converter:
    optional = type(None) in args
    choices = [_converter(arg, strict) for arg in args if arg is not type(None)]

    def convert(value: Any, path: str) -> Any:
        if value is None and optional:
            return None
        errors = []
        for choice in choices:
            try:
                return choice(value, path)
            except WireError as exc:
                errors.append(exc)
        raise errors[0] if len(errors) == 1 else WireError(path, f"unexpected value {value!r}")

    return convert


def _literal(allowed: tuple[object, ...]) -> Converter:
    def convert(value: Any, path: str) -> Any:
        if value not in allowed:
            raise WireError(path, f"must be one of {', '.join(map(repr, allowed))}, not {value!r}")
        return value

    return convert


def _dataclass(tp: type, strict: bool) -> Converter:
    # Field conversions are looked up on first use, so a class may refer to itself. The shape
    # is set in one assignment: another thread converting meanwhile never sees half of it.
    shape: tuple[list[tuple[str, Converter, bool]], frozenset[str]] | None = None

    def convert(value: Any, path: str) -> Any:
        nonlocal shape
        if shape is None:
            hints = typing.get_type_hints(tp)
            fields = [
                (
                    f.name,
                    _converter(hints[f.name], strict),
                    f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING,
                )
                for f in dataclasses.fields(tp)
                if f.init
            ]
            shape = (fields, frozenset(name for name, _, _ in fields))
        plan, known = shape
        if not isinstance(value, dict):
            raise WireError(path, f"must be an object, not {type(value).__name__}")
        if strict and not known.issuperset(value):
            unknown = sorted(str(k) for k in value if k not in known)
            raise WireError(_join(path, unknown[0]), "unknown field")
        kwargs = {}
        for name, field_converter, required in plan:
            if name in value:
                try:
                    kwargs[name] = field_converter(value[name], "")
                except WireError as exc:
                    raise exc.under(_join(path, name)) from None
            elif required:
                raise WireError(_join(path, name), "is required")
        try:
            return tp(**kwargs)
        except WireError:
            raise
        except (TypeError, ValueError) as exc:
            raise WireError(path, str(exc)) from None

    return convert


def _enum(tp: type[enum.Enum]) -> Converter:
    def convert(value: Any, path: str) -> Any:
        try:
            return tp(value)
        except ValueError:
            allowed = ", ".join(repr(m.value) for m in tp)
            raise WireError(path, f"must be one of {allowed}, not {value!r}") from None

    return convert


def _sequence(origin: type, item_type: Any, strict: bool) -> Converter:
    item = _converter(item_type, strict)

    def convert(value: Any, path: str) -> Any:
        if not isinstance(value, (list, tuple)):
            raise WireError(path, f"must be a list, not {type(value).__name__}")
        try:
            items = [item(v, "") for v in value]
        except WireError:
            for i, v in enumerate(value):  # find which one, to name it
                try:
                    item(v, "")
                except WireError as exc:
                    raise exc.under(f"{path}[{i}]") from None
            raise
        return tuple(items) if origin is tuple else items

    return convert


def _mapping(key_type: Any, value_type: Any, strict: bool) -> Converter:
    key, item = _converter(key_type, strict), _converter(value_type, strict)

    def convert(value: Any, path: str) -> Any:
        if not isinstance(value, dict):
            raise WireError(path, f"must be an object, not {type(value).__name__}")
        converted = {}
        for k, v in value.items():
            try:
                converted[key(k, "")] = item(v, "")
            except WireError as exc:
                raise exc.under(_join(path, str(k))) from None
        return converted

    return convert


# The range of a signed 64-bit integer: what msgpack and the replicated state hold.
INT_MIN, INT_MAX = -(1 << 63), (1 << 63) - 1


def finite_float(value: int | float, path: str) -> float:
    """`value` as a finite float, or a WireError naming `path` (not an OverflowError)."""
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise WireError(
            path, f"must be a finite number of at most about 1e308, not {_excerpt(value)}"
        )
    return number


def checked_int(value: int, path: str) -> int:
    if not INT_MIN <= value <= INT_MAX:
        raise WireError(path, f"must be between {INT_MIN} and {INT_MAX}, not {_excerpt(value)}")
    return value


def _excerpt(number: int | float) -> str:
    # str() of an int over 4,300 digits raises; the digits say nothing past the first few.
    if isinstance(number, int) and abs(number) >= 10**40:
        return f"a {number.bit_length()}-bit integer"
    return str(number)


def _float(value: Any, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise WireError(path, f"must be a number, not {type(value).__name__}")
    return finite_float(value, path)


def _int(value: Any, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise WireError(path, f"must be an integer, not {type(value).__name__}")
    return checked_int(value, path)


def _exactly(tp: type) -> Converter:
    def convert(value: Any, path: str) -> Any:
        if not isinstance(value, tp):
            raise WireError(path, f"must be {_TYPE_NAMES[tp]}, not {type(value).__name__}")
        return value

    return convert


def _unsupported(tp: Any) -> Converter:
    def convert(value: Any, path: str) -> Any:
        raise WireError(path, f"unsupported type {tp!r}")

    return convert
