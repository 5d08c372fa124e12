"""Which DNS server the Docker driver gives containers: the node's own, where they can use it.

Docker's `dns` option writes plain addresses into the container's resolv.conf, which has no
port field, so a node whose DNS listens on another port than 53 (the default 7423, which
needs no root) cannot be a container's resolver; and a loopback address inside a container
is the container's own loopback, not the node's. In those cases containers keep Docker's
default resolvers and find services through the API or the routing mesh; a node started
with `--dns-port 53` on an address its containers reach (`--advertise` of a real interface)
gives them `NAME.shoal` and, with the search domain, plain `NAME`.
"""

from __future__ import annotations

import ipaddress

STANDARD_DNS_PORT = 53


def task_dns_servers(dns_address: str, dns_port: int) -> tuple[str, ...]:
    """The resolver addresses for a task's containers; empty when they cannot use ours."""
    if dns_port != STANDARD_DNS_PORT:
        return ()
    try:
        ip = ipaddress.ip_address(dns_address)
    except ValueError:  # a host name: resolv.conf needs an address
        return ()
    if ip.is_loopback or ip.is_unspecified:
        return ()
    return (dns_address,)
