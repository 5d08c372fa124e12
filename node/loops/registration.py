"""Keeps this node's record in the replicated state current (addresses, capacity, runtime,
key), and bootstraps a new cluster: the first voter of a fresh cluster commits the cluster
and registers itself as its voter."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable

from consensus.model import Node
from consensus.nodes import BootstrapCluster, RegisterNode, nodes
from consensus.raft import ProposeError
from node.control import ControlPlane

log = logging.getLogger(__name__)

# The fields of a node's record that this node owns; the others (role, status, labels,
# availability) are the cluster's.
OWN_FIELDS = (
    "name",
    "address",
    "api_port",
    "raft_port",
    "gossip_port",
    "resources",
    "runtime",
    "key_hash",
)


def differs(current: Node, wanted: Node) -> bool:
    return any(getattr(current, k) != getattr(wanted, k) for k in OWN_FIELDS)


class RegistrationLoop:
    def __init__(
        self,
        control: ControlPlane,
        node_id: str,
        *,
        record: Callable[[], Node],
        alone: Callable[[], bool],
        cluster_id: str,
        overlay_cidr: str,
        authority: Callable[[], tuple[tuple[str, ...], bytes]],
    ) -> None:
        """`record` is this node's wanted record; `alone` whether this node was created as
        the only voter of a new cluster (so it is the one to bootstrap it); `authority` the
        CA it created with the cluster (certificates, sealed key)."""
        self._authority = authority
        self._control = control
        self._raft = control.raft
        self._node_id = node_id
        self._record = record
        self._alone = alone
        self._cluster_id = cluster_id
        self._overlay_cidr = overlay_cidr

    async def run(self) -> None:
        seen = -1
        while True:
            seen = await self._raft.wait_changed(seen, timeout=1.0)
            with self._raft.view() as state:
                bootstrapped = bool(state.cluster.cluster_id)
                current = nodes(state).get(self._node_id)
            wanted = self._record()
            try:
                if not bootstrapped and self._raft.is_leader() and self._alone():
                    certificates, sealed_key = self._authority()
                    await self._control.submit(
                        BootstrapCluster(
                            self._cluster_id,
                            time.time(),
                            self._overlay_cidr,
                            certificates,
                            sealed_key,
                        )
                    )
                    now = time.time()
                    await self._control.submit(
                        RegisterNode(
                            dataclasses.replace(
                                wanted, role="voter", joined_at=now, status_changed_at=now
                            )
                        )
                    )
                elif current is not None and differs(current, wanted):
                    await self._control.submit(RegisterNode(wanted))
                else:
                    continue
            except ProposeError as exc:
                log.info("cannot update this node's registration yet: %s", exc)
