"""The nftables ruleset of one node's overlay, from its networks and their healthy tasks:
pure, rendered as one `nft -f` script that replaces the table in a single transaction.

- A VIP is DNAT to one of its service's healthy task addresses on that network, picked by
  `numgen random` (the port is kept, so a VIP serves every port its tasks listen on, except
  the ports it maps to another port of the tasks: a Kubernetes Service's port → targetPort). Only
  packets that enter from the VIP's own network, or that this node sends itself, are
  translated: a VIP is not reachable from another network or from outside.
- Translated connections are masqueraded behind this node's address on the network, so the
  chosen task's reply comes back through this node to be un-translated (the client and the
  task share the segment and would otherwise talk past the translation).
- Traffic between two networks' bridges is dropped: networks are isolated from each other.
- No connection from outside the network is let in (a host routing to a task address through
  a node gets nothing), except those the routing mesh translated to a task (a published
  port); replies to the tasks' own outbound connections still are.
- A packet still addressed to a VIP after translation has no healthy task: it is refused.
- An `internal` network's traffic never leaves its own bridge: it has no way out.

Kube-proxy's nftables mode is the model: one table of our own, chains per service, one
atomic transaction per change; established connections keep their translation.
"""

from __future__ import annotations

import ipaddress

from netoverlay.lb.nft import delete_table
from netoverlay.overlay.types import NodeOverlay, OverlayNetwork, ServiceOnNetwork


def vip_range(network: OverlayNetwork) -> str:
    _, upper = ipaddress.ip_network(network.subnet).subnets(prefixlen_diff=1)
    return str(upper)


def _vip_chains(network: OverlayNetwork) -> list[tuple[str, ServiceOnNetwork]]:
    """(chain, service) for each service with a VIP, by service name."""
    return [
        (f"vip_{network.vni}_{index}", service)
        for index, service in enumerate(sorted(network.services, key=lambda s: s.name))
        if service.vip
    ]


def _dnat(service: ServiceOnNetwork) -> list[str]:
    """The rules of a VIP's chain: its mapped ports first, then every other port as it is."""
    tasks = tuple(sorted(set(service.tasks)))
    if len(tasks) == 1:
        to = tasks[0]
    else:
        entries = ", ".join(f"{i} : {address}" for i, address in enumerate(tasks))
        to = f"numgen random mod {len(tasks)} map {{ {entries} }}"
    mapped = sorted({(p.protocol, p.port, p.target) for p in service.ports if p.port != p.target})
    return [
        *(
            f"\t\t{protocol} dport {port} dnat to {to} : {target}"
            for protocol, port, target in mapped
        ),
        f"\t\tdnat to {to}",
    ]


def render_ruleset(overlay: NodeOverlay, table: str) -> str:
    """The script that replaces `table` with the rules for `overlay`. The same input renders
    the same text, so an unchanged ruleset is never rewritten."""
    networks = sorted(overlay.networks, key=lambda n: n.vni)
    prerouting, output, chains, postrouting = [], [], [], []
    for network in networks:
        for chain, service in _vip_chains(network):
            if not service.tasks:
                continue  # left untranslated: the forward chain refuses it
            prerouting.append(f'\t\tiifname "{network.bridge}" ip daddr {service.vip} jump {chain}')
            output.append(f"\t\tip daddr {service.vip} jump {chain}")
            chains += [f"\tchain {chain} {{", *_dnat(service), "\t}"]
        postrouting.append(
            f'\t\tct status dnat oifname "{network.bridge}" '
            f"ip daddr {network.tasks_range} masquerade"
        )
    crossing = [f'"{a.bridge}" . "{b.bridge}"' for a in networks for b in networks if a is not b]
    forward = []
    if crossing:
        forward.append(f"\t\tiifname . oifname {{ {', '.join(crossing)} }} drop")
    for n in networks:
        # `ct status != dnat` would compare the whole status word: accept the translated
        # connections first, then drop every other new one.
        forward += [
            f'\t\toifname "{n.bridge}" iifname != "{n.bridge}" ct status dnat accept',
            f'\t\toifname "{n.bridge}" iifname != "{n.bridge}" ct state new drop',
        ]
    forward += [
        f'\t\tiifname "{n.bridge}" oifname != "{n.bridge}" drop' for n in networks if n.internal
    ]
    if networks:
        forward.append(
            f"\t\tip daddr {{ {', '.join(vip_range(n) for n in networks)} }} "
            "reject with icmp type admin-prohibited"
        )
    body = [
        "\tchain prerouting {",
        "\t\ttype nat hook prerouting priority dstnat; policy accept;",
        *prerouting,
        "\t}",
        "\tchain output {",
        "\t\ttype nat hook output priority -100; policy accept;",
        *output,
        "\t}",
        "\tchain postrouting {",
        "\t\ttype nat hook postrouting priority srcnat; policy accept;",
        *postrouting,
        "\t}",
        "\tchain forward {",
        "\t\ttype filter hook forward priority filter; policy accept;",
        *forward,
        "\t}",
        *chains,
    ]
    return "\n".join([*delete_table(table).splitlines(), f"table ip {table} {{", *body, "}", ""])
