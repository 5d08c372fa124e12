"""The PROXY protocol headers, version 1 (text, haproxy's spec section 2.1) and version 2
(binary, section 2.2), so a backend behind the proxy sees the client's address instead of the
balancer's. Pure: addresses in, bytes out."""

from __future__ import annotations

import ipaddress
import struct

SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
_VERSION_2_PROXY = 0x21  # version 2 (high nibble), command PROXY (low nibble)
_TCP_OVER_IPV4 = 0x11
_TCP_OVER_IPV6 = 0x21


def proxy_header(version: str, source: tuple[str, int], destination: tuple[str, int]) -> bytes:
    """The header of `version` ("v1" or "v2") for a TCP connection from `source` to
    `destination`."""
    if version == "v1":
        return proxy_v1_header(source, destination)
    if version == "v2":
        return proxy_v2_header(source, destination)
    raise ValueError(f"proxy_protocol: must be 'v1' or 'v2', not {version!r}")


Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def _same_family(source: tuple[str, int], destination: tuple[str, int]) -> tuple[Address, Address]:
    src, dst = ipaddress.ip_address(source[0]), ipaddress.ip_address(destination[0])
    if src.version != dst.version:
        # An IPv4 client on a dual-stack socket shows as ::ffff:a.b.c.d; fold it back.
        src = getattr(src, "ipv4_mapped", None) or src
        dst = getattr(dst, "ipv4_mapped", None) or dst
    if src.version != dst.version:
        raise ValueError(
            f"source and destination differ in family: {source[0]} vs {destination[0]}"
        )
    return src, dst


def proxy_v1_header(source: tuple[str, int], destination: tuple[str, int]) -> bytes:
    """`PROXY TCP4 <src> <dst> <sport> <dport>\\r\\n` (TCP6 for IPv6)."""
    src, dst = _same_family(source, destination)
    family = "TCP4" if src.version == 4 else "TCP6"
    return f"PROXY {family} {src} {dst} {source[1]} {destination[1]}\r\n".encode()


def proxy_v2_header(source: tuple[str, int], destination: tuple[str, int]) -> bytes:
    """The header for a TCP connection from `source` to `destination` (host, port pairs, as
    `transport.get_extra_info("peername"/"sockname")` returns them; IPv6 tuples may carry
    flow info and scope, which the header has no room for)."""
    src, dst = _same_family(source, destination)
    family = _TCP_OVER_IPV4 if src.version == 4 else _TCP_OVER_IPV6
    body = src.packed + dst.packed + struct.pack("!HH", source[1], destination[1])
    return SIGNATURE + struct.pack("!BBH", _VERSION_2_PROXY, family, len(body)) + body
