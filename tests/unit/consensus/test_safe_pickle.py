"""pysyncobj's unpickler is replaced by one that builds plain data only."""

from __future__ import annotations

import os
import pickle

import pytest

import consensus.raft  # noqa: F401  (installs the restricted unpickler)
import pysyncobj.pickle as pysyncobj_pickle
from pysyncobj.node import TCPNode


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
