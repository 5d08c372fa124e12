"""The typed wire conversion and the versioned command codec."""

from __future__ import annotations

import msgpack
import pytest

import consensus  # noqa: F401
from consensus import codec
from consensus.model import Node
from consensus.nodes import SetNodeStatus, UpdateNode
from consensus.wire import WireError, from_plain


def test_errors_name_the_field_and_the_reason():
    with pytest.raises(WireError) as exc:
        from_plain(
            Node,
            {
                "id": "a",
                "name": "n",
                "address": "x",
                "api_port": "80",
                "raft_port": 1,
                "gossip_port": 2,
            },
        )
    assert exc.value.field == "api_port" and "integer" in exc.value.reason
    with pytest.raises(WireError) as exc:
        from_plain(
            Node,
            {
                "id": "a",
                "name": "n",
                "address": "x",
                "api_port": 1,
                "raft_port": 1,
                "gossip_port": 2,
                "resources": {"cpu_millis": True},
            },
        )
    assert exc.value.field == "resources.cpu_millis"
    with pytest.raises(WireError) as exc:
        from_plain(UpdateNode, {"node_id": "a", "colour": "red"})
    assert exc.value.field == "colour" and exc.value.reason == "unknown field"
    with pytest.raises(WireError) as exc:
        from_plain(UpdateNode, {})
    assert exc.value.field == "node_id" and exc.value.reason == "is required"


def test_codec_round_trip_and_refusals():
    cmd = UpdateNode("a", {"k": "v"}, ("x",), "drain")
    env = codec.decode(codec.encode(cmd, "rid"))
    assert env.command == cmd and env.request_id == "rid"
    with pytest.raises(codec.CodecError, match="unknown command"):
        codec.decode(msgpack.packb([1, "rm -rf", 1, "", {}]))
    with pytest.raises(codec.CodecError, match="unsupported version"):
        codec.decode(msgpack.packb([1, "node.status", 99, "", {}]))
    with pytest.raises(codec.CodecError, match="envelope format"):
        codec.decode(msgpack.packb([7, "node.status", 1, "", {}]))
    bad = msgpack.packb([1, "node.status", 1, "", {"node_id": "a", "status": "gone", "at": 1.0}])
    with pytest.raises(codec.CodecError, match="status"):
        codec.decode(bad)
    assert codec.decode(codec.encode(SetNodeStatus("a", "down", 2.0))).command.status == "down"
