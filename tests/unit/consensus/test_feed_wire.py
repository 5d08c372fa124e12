"""The feed's frames: what a voter encodes, a member decodes, in any chunking; bad input is
a FeedError, never a crash or an unbounded buffer."""

from __future__ import annotations

import struct

import msgpack
import pytest

from consensus.feed_wire import Beat, Entries, FeedDecoder, FeedError, Snapshot, encode


def test_frames_survive_any_chunking():
    frames = [
        Beat("127.0.0.1:7421", 3, 17),
        Beat(None, 0, 0),
        Snapshot(17, b"\x00state"),
        Entries(18, (b"a", b"", b"c" * 1000)),
    ]
    data = b"".join(encode(f) for f in frames)
    for size in (1, 3, 7, len(data)):
        decoder, got = FeedDecoder(), []
        for start in range(0, len(data), size):
            got += decoder.feed(data[start : start + size])
        assert got == frames


def _raw(items: object) -> bytes:
    body = msgpack.packb(items)
    return struct.pack(">I", len(body)) + body


@pytest.mark.parametrize(
    "data",
    [
        _raw(["x", 1]),
        _raw([]),
        _raw({"s": 1}),
        _raw(["e", 0, [b"a"]]),  # entries start at 1
        _raw(["e", 1, ["text"]]),
        _raw(["s", -1, b""]),
        _raw(["b", 1, 2, 3]),
        _raw(["b", None, 1]),
        struct.pack(">I", 1) + b"\xc1",  # never used in msgpack
    ],
)
def test_malformed_frames_are_refused(data):
    with pytest.raises(FeedError):
        FeedDecoder().feed(data)


def test_a_length_above_the_bound_is_refused_before_buffering_it():
    with pytest.raises(FeedError, match="above the bound"):
        FeedDecoder(max_frame=100).feed(struct.pack(">I", 101))
