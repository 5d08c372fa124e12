"""The cluster snapshot file: the replicated state at one committed index, with a header.

A snapshot is `MAGIC | header length (4 bytes, big-endian) | header (JSON) | payload`. The
payload is the state's own msgpack (`ClusterState.to_msgpack`, what Raft's snapshots hold),
so secrets stay sealed as they are in the state. The header says what the payload is: the
file format, the cluster id, the Shoal version that wrote it, the applied index and Raft
term it was taken at, when, its size and sha256, and `seal`: an HMAC of the digest under a
key derived from the cluster secret (made and checked by the node, which holds the keys):
whoever restores it proves they hold that cluster's secret, and a file edited and
re-summed does not pass.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import asdict, dataclass, fields
from typing import Any, BinaryIO

from consensus.networks import NETWORKS
from consensus.nodes import NODES
from consensus.secrets import TABLES as BLOB_TABLES
from consensus.state import ClusterState
from consensus.tasks import SERVICES, TASKS

MAGIC = b"SHOALSNP"
FORMAT = 1
MAX_HEADER = 64 * 1024
_LENGTH = struct.Struct(">I")
# How much of the payload is hashed at a time while a file is read back.
_CHUNK = 1 << 20


class SnapshotError(ValueError):
    """A file that is not a snapshot this version reads, or whose payload does not match."""


@dataclass(frozen=True, slots=True)
class SnapshotHeader:
    format: int
    cluster_id: str
    shoal_version: str
    index: int
    term: int
    created_at: float
    size: int
    sha256: str
    seal: str

    def encode(self) -> bytes:
        body = json.dumps(asdict(self), sort_keys=True).encode()
        return MAGIC + _LENGTH.pack(len(body)) + body

    @staticmethod
    def decode(raw: bytes) -> SnapshotHeader:
        try:
            plain = json.loads(raw)
        except ValueError:
            raise SnapshotError("header: not JSON") from None
        if not isinstance(plain, dict):
            raise SnapshotError("header: not a JSON object")
        if plain.get("format") != FORMAT:
            raise SnapshotError(
                f"header.format: this version reads snapshot format {FORMAT}, "
                f"the file is format {plain.get('format')!r}"
            )
        values: dict[str, Any] = {}
        for f in fields(SnapshotHeader):
            value = plain.get(f.name)
            wanted = float if f.type == "float" else int if f.type == "int" else str
            if wanted is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if not isinstance(value, wanted) or isinstance(value, bool):
                raise SnapshotError(f"header.{f.name}: missing or not a {wanted.__name__}")
            values[f.name] = value
        return SnapshotHeader(**values)


def digest(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


def read_header(stream: BinaryIO) -> SnapshotHeader:
    magic = stream.read(len(MAGIC))
    if magic != MAGIC:
        raise SnapshotError("not a Shoal snapshot (the file does not start with SHOALSNP)")
    length_raw = stream.read(_LENGTH.size)
    if len(length_raw) != _LENGTH.size:
        raise SnapshotError("header: truncated")
    (length,) = _LENGTH.unpack(length_raw)
    if length > MAX_HEADER:
        raise SnapshotError(f"header: {length} bytes, more than {MAX_HEADER}")
    raw = stream.read(length)
    if len(raw) != length:
        raise SnapshotError("header: truncated")
    return SnapshotHeader.decode(raw)


def read_payload(stream: BinaryIO, header: SnapshotHeader) -> bytes:
    """The payload after the header, checked against the header's size and sha256."""
    hasher = hashlib.sha256()
    parts = []
    remaining = header.size
    while remaining > 0:
        chunk = stream.read(min(_CHUNK, remaining))
        if not chunk:
            break
        hasher.update(chunk)
        parts.append(chunk)
        remaining -= len(chunk)
    if remaining or stream.read(1):
        raise SnapshotError(
            f"payload: the header says {header.size} bytes, the file holds "
            f"{'fewer' if remaining else 'more'} (truncated or appended to)"
        )
    if hasher.hexdigest() != header.sha256:
        raise SnapshotError("payload: sha256 does not match the header's (the file is corrupt)")
    return b"".join(parts)


def decode_state(payload: bytes) -> ClusterState:
    try:
        return ClusterState.from_msgpack(payload)
    except Exception as exc:  # msgpack and the wire checks raise several types
        raise SnapshotError(f"payload: not a cluster state this version reads: {exc}") from None


def counts(state: ClusterState) -> dict[str, int]:
    """What `snapshot inspect` shows of a state."""
    tables = {
        "services": SERVICES,
        "tasks": TASKS,
        "secrets": BLOB_TABLES["secret"],
        "configs": BLOB_TABLES["config"],
        "networks": NETWORKS,
        "nodes": NODES,
    }
    return {name: len(state.table(table)) for name, table in tables.items()}
