"""A message between Raft peers as pysyncobj's transport carries it: a dict decoded from the
wire by pysyncobj, whose fields are checked where they are read."""

from typing import Any, TypeAlias

PeerMessage: TypeAlias = dict[str, Any]
