"""pysyncobj's files in a data dir, read and written while no replica runs on them.

A replica keeps its log in `raft/ROLE.journal` and its last snapshot in `raft/ROLE.dump`
(consensus.raft). Offline, a node needs to: check that they are readable before it trusts
them (a replica that cannot read its dump starts from an EMPTY state, with only a log
line to say so); rebuild the state they hold (`--force-new-cluster`); and write a dump that a
new single-voter replica starts from (`--restore`, `--force-new-cluster`). These formats are
pysyncobj's (0.3.17), not Shoal's: tests/unit/consensus/test_raft_files.py writes them with
pysyncobj itself and reads them back here, so an upgrade that changes them fails there.

- journal: a 40-byte header (`PYSYNCOBJ`, version, format 1, end offset), then records
  `size | idx | term | command | size` (little-endian); a command's first byte is its type
  (0 a replicated call, pickled `(method id, args)`; 1 no-op; 2 membership; 3 version).
- dump: gzip of a pickle (protocol 2) of `(data, last entry, the entry before it, nodes)`,
  where `data` is `[SyncObj fields, each consumer's _serialize()]`: for Shoal's one consumer
  `{"state": msgpack of the ClusterState}`.
"""

from __future__ import annotations

import gzip
import os
import struct
from typing import Any

import pysyncobj.pickle as pysyncobj_pickle
from pysyncobj.node import TCPNode

from consensus import safe_pickle
from consensus.state import ClusterState

safe_pickle.install()

_NAME = b"PYSYNCOBJ"
_HEADER = 24 + 8 + 4 + 4
_END_OFFSET = struct.Struct("<I")
_RECORD_SIZE = struct.Struct("<I")
_RECORD_HEAD = struct.Struct("<QQ")
REGULAR, NO_OP = 0, 1
# pysyncobj numbers replicated methods by (version, consumer, name): `apply` is 0, `barrier` 1,
# `batch` 2 (several proposals in one entry, consensus.proposals).
APPLY_METHOD_ID = 0
BARRIER_METHOD_ID = 1
BATCH_METHOD_ID = 2

Entry = tuple[bytes, int, int]


class RaftFileError(ValueError):
    """A journal or dump that cannot be read: the message says which file and what is wrong."""


def journal_path(raft_dir: str, role: str) -> str:
    return os.path.join(raft_dir, f"{role}.journal")


def dump_path(raft_dir: str, role: str) -> str:
    return os.path.join(raft_dir, f"{role}.dump")


def read_journal(path: str) -> list[Entry]:
    """Every entry of a journal, checked: record sizes agree at both ends, indices follow
    each other and terms never go down."""
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < _HEADER or not raw.startswith(_NAME):
        raise RaftFileError(f"{path}: not a Raft journal (no PYSYNCOBJ header)")
    (end,) = _END_OFFSET.unpack_from(raw, _HEADER - 4)
    if not _HEADER <= end <= len(raw):
        raise RaftFileError(
            f"{path}: its end offset {end} lies outside the file ({len(raw)} bytes)"
        )
    entries: list[Entry] = []
    offset = _HEADER
    while offset < end:
        if offset + 4 + _RECORD_HEAD.size > end:
            raise RaftFileError(f"{path}: record at byte {offset} is cut short")
        (size,) = _RECORD_SIZE.unpack_from(raw, offset)
        tail = offset + 4 + size
        if (
            size < _RECORD_HEAD.size
            or tail + 4 > end
            or _RECORD_SIZE.unpack_from(raw, tail)[0] != size
        ):
            raise RaftFileError(f"{path}: record at byte {offset} is damaged (its sizes disagree)")
        idx, term = _RECORD_HEAD.unpack_from(raw, offset + 4)
        if entries and (idx != entries[-1][1] + 1 or term < entries[-1][2]):
            raise RaftFileError(
                f"{path}: entry {idx} (term {term}) does not follow entry "
                f"{entries[-1][1]} (term {entries[-1][2]})"
            )
        entries.append((raw[offset + 4 + _RECORD_HEAD.size : tail], idx, term))
        offset = tail + 4
    return entries


def read_dump(path: str) -> tuple[bytes, Entry]:
    """The state's msgpack in a dump, and the last log entry it covers."""
    try:
        with open(path, "rb") as f, gzip.GzipFile(fileobj=f) as g:
            data = pysyncobj_pickle.load(g)
        state = data[0][1]["state"]
        last = data[1]
        if not isinstance(state, bytes) or not isinstance(last[1], int):
            raise TypeError("unexpected layout")
    except OSError:
        raise
    except Exception as exc:  # gzip, pickle and the layout each fail their own way
        raise RaftFileError(f"{path}: not a readable Raft snapshot ({exc})") from None
    return state, (last[0], last[1], last[2])


def write_dump(path: str, state: bytes, voter: str) -> None:
    """A dump a new replica starts from as the only voter, at Raft address `voter`: the
    state, two no-op entries (index 2 and 3, term 1) and the cluster of that voter alone
    (a replica that receives this dump keeps following the voters it names). A node that
    joins later holds index 1 only, so the leader sends it this dump first. No journal may
    be beside it."""
    noop = bytes([NO_OP])
    data = ([{}, {"state": state}], (noop, 3, 1), (noop, 2, 1), {TCPNode(voter)})
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        with gzip.GzipFile(fileobj=f, mode="wb", compresslevel=1) as g:
            pysyncobj_pickle.dump(data, g)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _applied_payloads(command: bytes) -> list[bytes]:
    """The commands an entry applies: one for an `apply` call, each of a `batch` call's in
    order, none for anything else (no-ops, membership, barriers)."""
    if not command or command[0] != REGULAR:
        return []
    call: Any = pysyncobj_pickle.loads(command[1:])
    if not (isinstance(call, tuple) and len(call) >= 2 and len(call[1]) == 1):
        return []
    argument = call[1][0]
    if call[0] == APPLY_METHOD_ID and isinstance(argument, bytes):
        return [argument]
    if call[0] == BATCH_METHOD_ID and isinstance(argument, list):
        return [c for c in argument if isinstance(c, bytes)]
    return []


def replay(raft_dir: str, role: str) -> ClusterState:
    """The state a replica's files hold: the dump, then every entry of the journal after it,
    committed or not (everything this node holds)."""
    dump, journal = dump_path(raft_dir, role), journal_path(raft_dir, role)
    state, after = ClusterState(), 0
    if os.path.exists(dump):
        raw, last = read_dump(dump)
        try:
            state = ClusterState.from_msgpack(raw)
        except Exception as exc:
            raise RaftFileError(f"{dump}: its state does not decode ({exc})") from None
        after = last[1]
    entries = read_journal(journal) if os.path.exists(journal) else []
    if entries and after and entries[0][1] > after + 1:
        raise RaftFileError(
            f"{journal}: starts at entry {entries[0][1]}, after a gap from the snapshot's {after}"
        )
    for command, idx, _term in entries:
        if idx <= after:
            continue
        try:
            payloads = _applied_payloads(command)
        except Exception as exc:
            raise RaftFileError(f"{journal}: entry {idx} does not decode ({exc})") from None
        for payload in payloads:
            state.apply_bytes(payload)
    return state
