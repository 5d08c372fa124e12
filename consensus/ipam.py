"""Address management for overlay networks: pure functions over the addresses already given.

A network's subnet is cut in two halves. The lower half is where tasks live (the on-link
prefix every node's bridge for the network carries); it is split into one lease per node,
and the node's container engine gives its tasks addresses inside its own lease only, so two
nodes can never hand out the same address. The upper half holds the services' virtual IPs:
no task holds one; the task's own node answers for them on the network, where the VIP's
DNAT rules pick a healthy task.

    10.200.0.0/20     network
      10.200.0.0/21     tasks: leases of /26 (10.200.0.0/26 node a, 10.200.0.64/26 node b ...)
      10.200.8.0/21     service VIPs

Every function picks the lowest free choice, so `apply` on every node picks the same one.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection

# Chosen to stay clear of Docker's default pools (172.17-31.0.0/16, 192.168.0.0/16), of
# Kubernetes' usual service and pod ranges (10.96.0.0/12, 10.244.0.0/16) and of the small
# 10.0-10.10 ranges that home and office networks use.
DEFAULT_CLUSTER_CIDR = "10.200.0.0/13"
DEFAULT_NETWORK_PREFIX = 20
DEFAULT_LEASE_PREFIX = 26
# VXLAN ids of overlay networks start here (as Docker Swarm's do): lower ids are left to
# whatever else the operator runs.
FIRST_VNI = 4096
MAX_VNI = (1 << 24) - 1


class IpamError(ValueError):
    """A request the address space cannot satisfy, or an address that does not fit it."""


def parse_network(text: str, field: str) -> ipaddress.IPv4Network:
    try:
        net = ipaddress.ip_network(text)
    except ValueError:
        raise IpamError(
            f"{field}: {text!r} is not an IPv4 network in CIDR form (10.200.0.0/20)"
        ) from None
    if not isinstance(net, ipaddress.IPv4Network):
        raise IpamError(f"{field}: overlay networks are IPv4 only, not {text!r}")
    return net


def check_subnet(
    subnet: str, lease_prefix: int = DEFAULT_LEASE_PREFIX, field: str = "subnet"
) -> str:
    """`subnet` in canonical form when it can hold at least two leases and a VIP half."""
    net = parse_network(subnet, field)
    if net.prefixlen > lease_prefix - 2:
        raise IpamError(
            f"{field}: {subnet} is too small: a network needs a /{lease_prefix - 2} "
            f"or larger (two halves, each of at least two /{lease_prefix} leases)"
        )
    return str(net)


def check_cluster_cidr(cidr: str) -> str:
    """`cidr` in canonical form when it holds at least one network of the default size."""
    net = parse_network(cidr, "overlay_cidr")
    if net.prefixlen > DEFAULT_NETWORK_PREFIX:
        raise IpamError(
            f"overlay_cidr: {cidr} is smaller than one network (/{DEFAULT_NETWORK_PREFIX})"
        )
    return str(net)


def tasks_range(subnet: str) -> ipaddress.IPv4Network:
    """The lower half of a network: where its tasks' addresses are."""
    lower, _ = parse_network(subnet, "subnet").subnets(prefixlen_diff=1)
    return lower


def vip_range(subnet: str) -> ipaddress.IPv4Network:
    """The upper half of a network: its services' virtual IPs."""
    _, upper = parse_network(subnet, "subnet").subnets(prefixlen_diff=1)
    return upper


def overlapping(candidate: ipaddress.IPv4Network | str, taken: Collection[str]) -> str | None:
    """The first of `taken` that shares an address with `candidate`, if any."""
    if isinstance(candidate, str):
        candidate = parse_network(candidate, "subnet")
    return next((t for t in taken if candidate.overlaps(parse_network(t, "taken"))), None)


def next_network_subnet(
    cluster_cidr: str, taken: Collection[str], prefix: int = DEFAULT_NETWORK_PREFIX
) -> str:
    """The lowest /`prefix` of the cluster range that overlaps no network already made."""
    pool = parse_network(cluster_cidr, "cluster_cidr")
    if prefix < pool.prefixlen:
        raise IpamError(f"prefix: a /{prefix} does not fit in the cluster range {pool}")
    for candidate in pool.subnets(new_prefix=prefix):
        if overlapping(candidate, taken) is None:
            return str(candidate)
    raise IpamError(
        f"subnet: the cluster range {pool} has no free /{prefix} left "
        f"({len(taken)} networks): remove a network or give a subnet"
    )


def next_lease(
    subnet: str, taken: Collection[str], lease_prefix: int = DEFAULT_LEASE_PREFIX
) -> str | None:
    """The lowest free lease of a network's task range; None when all are given."""
    used = set(taken)
    for candidate in tasks_range(subnet).subnets(new_prefix=lease_prefix):
        if str(candidate) not in used:
            return str(candidate)
    return None


def lease_gateway(lease: str) -> str:
    """The node's own address in its lease (its bridge's, its tasks' gateway and resolver)."""
    return str(parse_network(lease, "lease").network_address + 1)


def next_vip(subnet: str, taken: Collection[str]) -> str | None:
    """The lowest free virtual IP of a network; None when all are given."""
    vips = vip_range(subnet)
    used = set(taken)
    for address in vips.hosts():
        if str(address) not in used:
            return str(address)
    return None


def next_vni(taken: Collection[int]) -> int:
    used = set(taken)
    for vni in range(FIRST_VNI, MAX_VNI + 1):
        if vni not in used:
            return vni
    raise IpamError("vni: every VXLAN id is in use")
