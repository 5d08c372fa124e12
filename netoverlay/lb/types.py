"""The load balancer's input: published service ports and the endpoints behind them.

The gossiped endpoint table and the cluster state are converted into these values by the
agent; the picker, both data planes and DNS take nothing else. Constructors validate, so a
malformed value from the network fails with the field and the reason (`consensus.wire`'s
`from_plain` turns the ValueError into a WireError naming the path).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Literal

Protocol = Literal["tcp", "udp"]
ProxyProtocol = Literal["", "v1", "v2"]
PublishMode = Literal["ingress", "host"]


def _check_port(field: str, port: int, *, allow_zero: bool = False) -> None:
    low = 0 if allow_zero else 1
    if isinstance(port, bool) or not isinstance(port, int) or not low <= port <= 65535:
        raise ValueError(f"{field}: must be an integer port {low}..65535, not {port!r}")


def _check_address(field: str, address: str) -> None:
    try:
        ipaddress.ip_address(address)
    except ValueError:
        raise ValueError(f"{field}: must be an IP address, not {address!r}") from None


@dataclass(frozen=True, slots=True)
class Backend:
    """One healthy task of a service, reachable at address:port: where the load balancer
    sends a connection and what DNS answers (a task's own record is consensus.tasks.Endpoint)."""

    service: str
    task_id: str
    node_id: str
    address: str
    port: int
    weight: int = 1
    # The service port this endpoint serves, for services that publish several; None serves
    # every published port of the service (the common single-port case).
    target_port: int | None = None
    # What it serves: only the published ports of the same protocol are sent to it.
    protocol: Protocol = "tcp"

    def __post_init__(self) -> None:
        if not self.service:
            raise ValueError("service: must not be empty")
        if not self.task_id:
            raise ValueError("task_id: must not be empty")
        _check_address("address", self.address)
        _check_port("port", self.port)
        if isinstance(self.weight, bool) or not isinstance(self.weight, int) or self.weight < 1:
            raise ValueError(f"weight: must be an integer >= 1, not {self.weight!r}")
        if self.target_port is not None:
            _check_port("target_port", self.target_port)
        if self.protocol not in ("tcp", "udp"):
            raise ValueError(f"protocol: must be 'tcp' or 'udp', not {self.protocol!r}")

    @property
    def key(self) -> BackendKey:
        """What identifies an endpoint across table updates (a weight change keeps its key)."""
        return (self.task_id, self.address, self.port)


BackendKey = tuple[str, str, int]


@dataclass(frozen=True, slots=True)
class ServicePort:
    """A port a service publishes. Ingress ports listen on every node (the routing mesh);
    host ports only on the nodes running a task, which the runtime publishes itself."""

    service: str
    published_port: int
    target_port: int
    protocol: Protocol = "tcp"
    mode: PublishMode = "ingress"
    # Send a PROXY protocol header first ("v1" text, "v2" binary; "" none), so the backend
    # sees the client's address.
    proxy_protocol: ProxyProtocol = ""
    # Close a connection after this many seconds without traffic; None keeps it forever.
    idle_timeout: float | None = None

    def __post_init__(self) -> None:
        if not self.service:
            raise ValueError("service: must not be empty")
        _check_port("published_port", self.published_port)
        _check_port("target_port", self.target_port)
        if self.protocol not in ("tcp", "udp"):
            raise ValueError(f"protocol: must be 'tcp' or 'udp', not {self.protocol!r}")
        if self.mode not in ("ingress", "host"):
            raise ValueError(f"mode: must be 'ingress' or 'host', not {self.mode!r}")
        if self.proxy_protocol not in ("", "v1", "v2"):
            raise ValueError(
                f"proxy_protocol: must be 'v1', 'v2' or '' (none), not {self.proxy_protocol!r}"
            )
        if self.idle_timeout is not None and not self.idle_timeout > 0:
            raise ValueError(
                f"idle_timeout: must be > 0 seconds or absent, not {self.idle_timeout!r}"
            )


def routed_ports(ports: list[ServicePort], protocol: Protocol = "tcp") -> dict[int, ServicePort]:
    """The ports of `protocol` the routing mesh serves (the ingress ones), by published port.

    Two services cannot share a published port; the cluster state refuses that, so a
    duplicate here is a bug upstream and fails loudly rather than routing to either.
    """
    routed: dict[int, ServicePort] = {}
    for port in ports:
        if port.mode != "ingress" or port.protocol != protocol:
            continue
        other = routed.get(port.published_port)
        if other is not None and other != port:
            raise ValueError(
                f"published_port: {port.published_port} is published by both "
                f"{other.service!r} and {port.service!r}"
            )
        routed[port.published_port] = port
    return routed


def endpoints_for(port: ServicePort, endpoints: dict[str, list[Backend]]) -> list[Backend]:
    """The endpoints that serve `port`: its service's, matching its target port and protocol."""
    return [
        e
        for e in endpoints.get(port.service, ())
        if (e.target_port is None or e.target_port == port.target_port)
        and e.protocol == port.protocol
    ]
