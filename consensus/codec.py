"""The versioned msgpack codec for replicated commands.

A command on the wire is `[FORMAT, tag, version, request_id, payload]`: FORMAT is this
envelope's version, `tag` names the command type, `version` the payload schema of that
type, and `request_id` makes a retried proposal idempotent. Decoding never executes
anything: it only builds frozen dataclasses through `wire.from_plain`, and every failure
is a `CodecError`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import msgpack

from consensus.wire import WireError, from_plain, to_plain

FORMAT = 1

T = TypeVar("T")


class CodecError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class CommandType:
    tag: str
    version: int
    cls: type
    # The payload's plain form: by default the dataclass's own (wire.to_plain/from_plain);
    # a command may register a compact one (see `compact_form`).
    to_payload: Callable[[Any], Any] = to_plain
    from_payload: Callable[[Any], Any] | None = None

    def decode_payload(self, payload: Any) -> Any:
        if self.from_payload is not None:
            return self.from_payload(payload)
        return from_plain(self.cls, payload, "")


_BY_TAG: dict[str, CommandType] = {}
_BY_CLASS: dict[type, CommandType] = {}


def command(tag: str, version: int = 1) -> Callable[[type[T]], type[T]]:
    """Register a frozen dataclass as a replicated command type under `tag`."""

    def register(cls: type[T]) -> type[T]:
        if tag in _BY_TAG:
            raise RuntimeError(f"command tag {tag!r} registered twice")
        kind = CommandType(tag, version, cls)
        _BY_TAG[tag] = kind
        _BY_CLASS[cls] = kind
        return cls

    return register


def compact_form(
    cls: type, version: int, to_payload: Callable[[Any], Any], from_payload: Callable[[Any], Any]
) -> None:
    """Give a registered command a payload form of its own, as schema `version`.
    `from_payload` must check what it reads as strictly as from_plain, raising WireError."""
    kind = _BY_CLASS[cls]
    compact = CommandType(kind.tag, version, cls, to_payload, from_payload)
    _BY_TAG[kind.tag] = _BY_CLASS[cls] = compact


@dataclass(frozen=True, slots=True)
class Envelope:
    command: Any
    request_id: str = ""


def encode(cmd: Any, request_id: str = "") -> bytes:
    kind = _BY_CLASS.get(type(cmd))
    if kind is None:
        raise CodecError(f"{type(cmd).__name__} is not a registered command")
    packed: bytes = msgpack.packb(
        [FORMAT, kind.tag, kind.version, request_id, kind.to_payload(cmd)], use_bin_type=True
    )
    return packed


def decode(data: bytes) -> Envelope:
    try:
        raw = msgpack.unpackb(data, raw=False, strict_map_key=False)
    except Exception as exc:  # msgpack raises several unrelated types on garbage
        raise CodecError(f"not msgpack: {exc}") from None
    if not isinstance(raw, list) or len(raw) != 5:
        raise CodecError("not a command envelope")
    fmt, tag, version, request_id, payload = raw
    if fmt != FORMAT:
        raise CodecError(f"unsupported envelope format {fmt!r}")
    kind = _BY_TAG.get(tag) if isinstance(tag, str) else None
    if kind is None:
        raise CodecError(f"unknown command {tag!r}")
    if version != kind.version:
        raise CodecError(
            f"{tag}: unsupported version {version!r} (this node speaks {kind.version})"
        )
    if not isinstance(request_id, str):
        raise CodecError("request_id must be a string")
    try:
        cmd = kind.decode_payload(payload)
    except WireError as exc:
        raise CodecError(f"{tag}: {exc}") from None
    return Envelope(cmd, request_id)
