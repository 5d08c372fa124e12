"""Whether a node's API port is free before a node is started on it."""

from __future__ import annotations

import socket


def port_taken(address: str, port: int) -> str:
    """Why `address:port` cannot take the node's API listener ("" when it can). Bound the
    same way the API binds it (SO_REUSEADDR), so a port in TIME_WAIT still counts as free."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((address, port))
        except OSError as exc:
            return f"{address}:{port} is in use ({exc.strerror}): is another node running there?"
    return ""
