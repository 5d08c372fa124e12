"""Service discovery on the node: its healthy tasks announced in the gossip table, and the
routing mesh and DNS served from what the whole cluster announces."""

from node.mesh.announce import Announcement, endpoint_key
from node.mesh.mesh import Mesh, MeshConfig
from node.mesh.view import INGRESS_META, MeshView, build_view

__all__ = [
    "INGRESS_META",
    "Announcement",
    "Mesh",
    "MeshConfig",
    "MeshView",
    "build_view",
    "endpoint_key",
]
