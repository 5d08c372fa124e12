"""pysyncobj's unpickler is replaced by one that builds plain data only."""

from __future__ import annotations

import os
import pickle

import pysyncobj.pickle as pysyncobj_pickle
import pytest
from pysyncobj.node import TCPNode

import consensus.raft  # noqa: F401  (installs the restricted unpickler)


class _Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_plain_raft_frames_and_nodes_still_load():
    frame = {"type": "append_entries", "entries": [(b"\x93\x01", 5, 2)], "set": {1, 2}}
    assert pysyncobj_pickle.loads(pysyncobj_pickle.dumps(frame)) == frame
    node = pysyncobj_pickle.loads(pysyncobj_pickle.dumps(["add", "h:1", TCPNode("h:1")]))[2]
    assert node.address == "h:1"


def test_a_frame_that_would_run_code_is_refused():
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        pysyncobj_pickle.loads(pickle.dumps(_Exploit(), protocol=2))


def test_the_empty_bytes_that_end_every_snapshot_transfer_load():
    # The last chunk of a snapshot sent to a node behind the leader's log is b"", which
    # protocol 2 writes as a call of bytes(): refusing it cut every such transfer short.
    last_chunk = {"type": "append_entries", "serialized": (b"", False, True)}
    assert pysyncobj_pickle.loads(pysyncobj_pickle.dumps(last_chunk)) == last_chunk


def test_bytes_called_with_a_size_is_refused():
    class _Allocate:
        def __reduce__(self):
            return (bytes, (1 << 40,))

    with pytest.raises(pickle.UnpicklingError, match="bytes"):
        pysyncobj_pickle.loads(pickle.dumps(_Allocate(), protocol=2))


def test_every_pysyncobj_load_path_is_restricted_the_journal_meta_file_included(tmp_path):
    from pysyncobj.journal import MetaStorer

    from consensus.safe_pickle import unrestricted_loaders

    assert unrestricted_loaders() == []
    marker = tmp_path / "ran"

    class _Touch:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    meta = tmp_path / "voter.journal.meta"
    meta.write_bytes(pickle.dumps(_Touch(), protocol=2))
    assert MetaStorer(str(meta)).getMeta() == {}  # refused (pysyncobj treats it as absent)
    assert not marker.exists()
    meta.write_bytes(pysyncobj_pickle.dumps({"votedForNodeId": None, "currentTerm": 3}))
    assert MetaStorer(str(meta)).getMeta()["currentTerm"] == 3
