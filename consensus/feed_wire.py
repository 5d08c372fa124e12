"""The frames of a voter's committed-state feed, with no I/O: what a voter sends a member
and the incremental decoder the member reads them with.

A frame is a 4-byte big-endian length and a msgpack array whose first item names its kind:
- Snapshot(applied, state): the whole state (ClusterState's msgpack) after `applied` commands;
- Entries(first, commands): the commands that take the state to first, first + 1, ...;
- Beat(leader, term, applied): the voter's Raft leader and term, and how many commands it
  has applied; sent when they change and at every heartbeat interval, so a member notices a
  dead connection and knows how far behind it is.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import msgpack

# A snapshot of a large state is one frame; entries and beats are small.
MAX_FRAME = 512 << 20
_LENGTH = struct.Struct(">I")


class FeedError(Exception):
    """The feed broke its own rules (a bad frame, a gap in the entries): reconnect."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    applied: int
    state: bytes


@dataclass(frozen=True, slots=True)
class Entries:
    first: int
    commands: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class Beat:
    leader: str | None
    term: int
    applied: int


Frame = Snapshot | Entries | Beat


def encode(frame: Frame) -> bytes:
    body: bytes
    if isinstance(frame, Snapshot):
        body = msgpack.packb(["s", frame.applied, frame.state])
    elif isinstance(frame, Entries):
        body = msgpack.packb(["e", frame.first, list(frame.commands)])
    else:
        body = msgpack.packb(["b", frame.leader, frame.term, frame.applied])
    return _LENGTH.pack(len(body)) + body


def _frame(items: object) -> Frame:
    if not isinstance(items, list) or not items:
        raise FeedError("a feed frame is a non-empty array")
    kind, rest = items[0], items[1:]
    try:
        if kind == "s":
            applied, state = rest
            if isinstance(applied, int) and applied >= 0 and isinstance(state, bytes):
                return Snapshot(applied, state)
        elif kind == "e":
            first, commands = rest
            if (
                isinstance(first, int)
                and first >= 1
                and isinstance(commands, list)
                and all(isinstance(c, bytes) for c in commands)
            ):
                return Entries(first, tuple(commands))
        elif kind == "b":
            leader, term, applied = rest
            if (
                (leader is None or isinstance(leader, str))
                and isinstance(term, int)
                and isinstance(applied, int)
            ):
                return Beat(leader, term, applied)
    except ValueError:
        pass
    raise FeedError(f"malformed feed frame of kind {kind!r}")


class FeedDecoder:
    """Bytes in, frames out, in the order they were sent."""

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self._buffer = bytearray()
        self._max_frame = max_frame

    def feed(self, data: bytes) -> list[Frame]:
        self._buffer += data
        frames: list[Frame] = []
        while len(self._buffer) >= _LENGTH.size:
            (size,) = _LENGTH.unpack_from(self._buffer)
            if size > self._max_frame:
                raise FeedError(f"feed frame of {size} bytes is above the bound {self._max_frame}")
            end = _LENGTH.size + size
            if len(self._buffer) < end:
                break
            body = bytes(self._buffer[_LENGTH.size : end])
            del self._buffer[:end]
            try:
                items = msgpack.unpackb(body, raw=False)
            except (ValueError, msgpack.UnpackException) as exc:
                raise FeedError(f"feed frame does not decode: {exc}") from None
            frames.append(_frame(items))
        return frames
