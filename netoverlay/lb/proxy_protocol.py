"""The PROXY protocol version 2 header (haproxy's spec, section 2.2), so a backend behind the
proxy sees the client's address instead of the balancer's. Pure: addresses in, bytes out."""

from __future__ import annotations

import ipaddress
import struct

SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
_VERSION_2_PROXY = 0x21  # version 2 (high nibble), command PROXY (low nibble)
_TCP_OVER_IPV4 = 0x11
_TCP_OVER_IPV6 = 0x21


def proxy_v2_header(source: tuple[str, int], destination: tuple[str, int]) -> bytes:
    """The header for a TCP connection from `source` to `destination` (host, port pairs, as
    `transport.get_extra_info("peername"/"sockname")` returns them; IPv6 tuples may carry
    flow info and scope, which the header has no room for)."""
    src, dst = ipaddress.ip_address(source[0]), ipaddress.ip_address(destination[0])
    if src.version != dst.version:
        # An IPv4 client on a dual-stack socket shows as ::ffff:a.b.c.d; fold it back.
        src = getattr(src, "ipv4_mapped", None) or src
        dst = getattr(dst, "ipv4_mapped", None) or dst
    if src.version != dst.version:
        raise ValueError(
            f"source and destination differ in family: {source[0]} vs {destination[0]}"
        )
    family = _TCP_OVER_IPV4 if src.version == 4 else _TCP_OVER_IPV6
    body = src.packed + dst.packed + struct.pack("!HH", source[1], destination[1])
    return SIGNATURE + struct.pack("!BBH", _VERSION_2_PROXY, family, len(body)) + body
