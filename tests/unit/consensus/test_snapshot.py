"""The snapshot file: a header that says what the payload is, checked on every read; a file
damaged, cut short, appended to, of another format or not a snapshot at all is refused
naming what is wrong."""

from __future__ import annotations

import io

import pytest

import consensus  # noqa: F401  (registers commands and tables)
from consensus.model import Node
from consensus.nodes import RegisterNode
from consensus.snapshot import (
    FORMAT,
    SnapshotError,
    SnapshotHeader,
    counts,
    decode_state,
    digest,
    read_header,
    read_payload,
)
from consensus.state import ClusterState


def _file() -> tuple[bytes, bytes]:
    state = ClusterState()
    state.apply(RegisterNode(Node("n1", "n1", "127.0.0.1", 7420, 7421, 7422)))
    payload = state.to_msgpack()
    header = SnapshotHeader(
        FORMAT, "c1", "0.1.0", state.applied, 3, 1.5, len(payload), digest(payload), "seal"
    )
    return header.encode(), payload


def _edited(header: bytes, old: bytes, new: bytes) -> bytes:
    body = header[12:].replace(old, new)
    return header[:8] + len(body).to_bytes(4, "big") + body


def _read(data: bytes):
    stream = io.BytesIO(data)
    header = read_header(stream)
    return header, read_payload(stream, header)


def test_a_snapshot_reads_back_with_its_header_and_counts():
    header, payload = _file()
    read, body = _read(header + payload)
    assert (read.cluster_id, read.index, read.term, read.size) == ("c1", 1, 3, len(payload))
    assert counts(decode_state(body)) == {
        "services": 0,
        "tasks": 0,
        "secrets": 0,
        "configs": 0,
        "networks": 0,
        "nodes": 1,
    }


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda h, p: h + p[:-1] + bytes([p[-1] ^ 1]), "sha256 does not match"),
        (lambda h, p: h + p[:-5], "holds fewer"),
        (lambda h, p: h + p + b"x", "holds more"),
        (lambda h, p: b"NOTASNAP" + h[8:] + p, "not a Shoal snapshot"),
        (lambda h, p: h[:20], "header: truncated"),
        (lambda h, p: _edited(h, b'"format": 1', b'"format": 9') + p, "the file is format 9"),
        (lambda h, p: _edited(h, b'"index": 1', b'"index": "1"') + p, "header.index"),
    ],
)
def test_damage_is_refused_naming_it(damage, message):
    header, payload = _file()
    with pytest.raises(SnapshotError, match=message):
        _read(damage(header, payload))


def test_a_payload_that_is_no_state_is_refused():
    with pytest.raises(SnapshotError, match="payload: not a cluster state"):
        decode_state(b"\x93\x01\x02\x03")


def test_a_plain_state_changes_a_table_and_leaves_the_rest_as_it_was():
    import dataclasses

    from consensus.state import PlainState

    _header, payload = _file()
    plain = PlainState(payload)
    rows = plain.rows("nodes")
    rows["n1"] = dataclasses.replace(rows["n1"], status="down")
    plain.set_rows("nodes", rows)
    state = decode_state(plain.to_msgpack())
    assert state.table("nodes")["n1"].status == "down" and state.applied == 1
    with pytest.raises(ValueError, match="unsupported snapshot format"):
        PlainState(b"\x81\xa6format\x09")


def test_a_node_keeps_only_its_newest_snapshots_private(tmp_path):
    import os

    from node import backup

    header, payload = _file()
    for index in (5, 6, 7):
        backup.keep(str(tmp_path), header, payload, index, 2)
    kept = backup.kept(str(tmp_path))
    assert [os.path.basename(p)[-17:] for p in kept] == ["000000000006.snap", "000000000007.snap"]
    assert os.stat(tmp_path / "snapshots").st_mode & 0o777 == 0o700
    assert {os.stat(p).st_mode & 0o777 for p in kept} == {0o600}
    assert backup.read(kept[-1])[1] == payload
