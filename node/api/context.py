"""What the API's handlers may use of the node that serves them. The node process satisfies
this protocol; handlers name nothing else of it, so they do not depend on the process that
imports them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from aiohttp import web

if TYPE_CHECKING:
    from consensus.model import Node
    from consensus.raft import RaftNode
    from consensus.store import Store
    from netoverlay.gossip.service import GossipService
    from node.config import NodeConfig
    from node.control import ControlPlane
    from node.loops.audit import AuditTrail
    from node.loops.event_feed import EventFeed
    from node.loops.gossip_keyring import GossipKeyring
    from node.loops.protocol import ProtocolLevels
    from node.loops.voters import VoterManager
    from node.mesh import Mesh
    from node.overlay.loop import Overlay
    from node.pki.store import NodeTls
    from node.security import ClusterKeys
    from node.telemetry import Telemetry


class NodeContext(Protocol):
    node_id: str
    config: NodeConfig
    keys: ClusterKeys
    raft: RaftNode
    store: Store  # every read of the state
    control: ControlPlane
    gossip: GossipService
    # The gossip keyring this node takes from the state, and what each node announced of it.
    gossip_keyring: GossipKeyring
    voters: VoterManager
    # The protocol level each node announced, and the cluster's.
    levels: ProtocolLevels
    mesh: Mesh
    events: EventFeed
    audit: AuditTrail
    telemetry: Telemetry
    overlay: Overlay | None
    # This node's certificate, key and trusted CAs (renewed in place).
    tls: NodeTls

    async def set_raft_role(self, role: str, voter_addresses: list[str]) -> None: ...

    async def tell_removed(self, node: Node) -> None: ...

    def request_stop(self, reason: str, left_cluster: bool = False) -> None: ...


NODE = web.AppKey("node", NodeContext)
