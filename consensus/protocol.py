"""What a node of this release can read and write in the Raft log: its protocol level.

A mixed cluster (during a rolling upgrade) is safe when its leader writes only what every
replica can apply, and every replica applies every entry (voters and members alike). So each
node announces the level it speaks, the cluster's level is the minimum over all its nodes,
and a format introduced at level N is written only once that minimum is at least N. A node
reads the formats of its own level and of the level before (one release back).

The levels, and what each one added (commands are `[FORMAT, tag, version, ...]`, see codec):
  1  every command at the version it had before levels existed (`tasks.assign` v2 among
     them), and the replicated methods `apply` and `barrier`. A node that announces no level
     speaks this one.
  2  the replicated method `batch`: several proposals in one entry (consensus.proposals).
     A node of level 1 may lack it, and pysyncobj halts on an entry it cannot dispatch.
  3  the gossip keyring (consensus.gossip_keys): its commands and its table, which a node of
     level 2 refuses in a snapshot (a state leaves an empty table out of its snapshots);
     and Raft over mutual TLS 1.3 instead of pysyncobj's plain TCP with its own encryption
     (consensus.raft.RaftTls). A node of this level dials TLS first and falls back to plain
     for a peer that refuses it, and accepts plain connections until it has seen every node
     of the cluster at this level; from then on only TLS (node.raft_gate).
  4  ReadIndex's messages between voters (consensus.read_index): a linearizable read is
     confirmed by one round of messages instead of a barrier entry, which a voter of level 3
     would not answer.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

LOWEST = 1
PROTOCOL = 4
# The level that added each gated format.
BATCH = 2
GOSSIP_KEYRING = 3
RAFT_TLS = 3
READ_INDEX = 4


def announced(value: Any) -> int:
    """The level a node announced (its gossip meta's `protocol`); one that announced none,
    or something that is no level, speaks the lowest."""
    if type(value) is int and LOWEST <= value <= 1_000_000:
        return value
    return LOWEST


def minimum(node_ids: Iterable[str], levels: Mapping[str, int], own: int = PROTOCOL) -> int:
    """The cluster's level: the lowest over `node_ids` (every node the cluster holds), each
    at the level it announced, or the lowest for one not heard from; `own` with no nodes."""
    return min((levels.get(node_id, LOWEST) for node_id in node_ids), default=own)


def refusal(cluster: int, own: int = PROTOCOL, *, exact: bool = True) -> str | None:
    """Why a node of level `own` cannot serve in a cluster of level `cluster`, if it cannot.
    Not `exact`: some node was not heard from and counted lowest, so the cluster's level may
    be higher than `cluster` (a node is then refused only for being older)."""
    if cluster > own:
        return (
            f"this node speaks protocol level {own} and the cluster {cluster}: its log holds "
            f"entries this release cannot read. Start it with the release the other nodes run"
        )
    if cluster < own - 1 and exact:
        return (
            f"this node speaks protocol level {own} and the cluster {cluster}, more than one "
            f"level older: upgrade the cluster through the release in between first"
        )
    return None
