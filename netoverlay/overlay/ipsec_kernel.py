"""The thin shell between the IPsec plan and the kernel. pyroute2 has no XFRM support, so
what the kernel holds is read with an XFRM netlink dump (only the fields the plan compares),
and changes are `ip xfrm` commands fed to one `ip -batch` on its standard input (keys never
appear on a command line). It decides nothing.

When the kernel cannot make an association (no ESP or AES-GCM in it), the policies still
go in, and they drop the network's VXLAN instead of letting it out in clear.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import struct
from collections.abc import Iterable

from netoverlay.overlay.ipsec import (
    ALGORITHM,
    ICV_BITS,
    POLICY_PRIORITY,
    AddState,
    DeletePolicy,
    DeleteState,
    IpsecStep,
    Policy,
    vni_of,
)

_NETLINK_XFRM = 6
_GETSA, _GETPOLICY = 0x12, 0x15
_NLMSG_ERROR, _NLMSG_DONE = 2, 3
_DUMP = 0x1 | 0x300  # NLM_F_REQUEST | NLM_F_DUMP
_HEADER = struct.Struct("=IHHII")
_ATTR = struct.Struct("=HH")
_XFRMA_MARK = 21
_ESP = 50
_POLICY_OUT = 1
# Offsets in the kernel's fixed structures (linux/xfrm.h): xfrm_usersa_info is the
# selector (56 bytes), xfrm_id (daddr, spi, proto: 24), saddr (16), lifetimes (96), stats
# (12), seq, reqid, family...; xfrm_userpolicy_info is the selector, lifetimes (96),
# priority, index, dir..., 168 bytes with its padding.
_SA_DADDR, _SA_SPI, _SA_PROTO, _SA_SADDR, _SA_REQID, _SA_FAMILY = 56, 72, 76, 80, 208, 212
_SEL_DADDR, _SEL_SADDR, _SEL_DPORT, _SEL_FAMILY = 0, 16, 32, 40
_POL_PRIORITY, _POL_DIR, _POL_SIZE = 152, 160, 168


class IpsecKernelError(RuntimeError):
    """The kernel refused a change or a read; the text says which and why."""


def _dump(kind: int) -> list[bytes]:
    """The bodies of every message an XFRM dump of `kind` answers with."""
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, _NETLINK_XFRM) as sock:
        sock.bind((0, 0))
        request = bytes(64)  # room for the largest id structure a dump request may carry
        sock.send(_HEADER.pack(_HEADER.size + len(request), kind, _DUMP, 1, 0) + request)
        bodies: list[bytes] = []
        while True:
            data = sock.recv(1 << 16)
            offset = 0
            while offset + _HEADER.size <= len(data):
                length, mtype, _, _, _ = _HEADER.unpack_from(data, offset)
                body = data[offset + _HEADER.size : offset + length]
                offset += (length + 3) & ~3
                if mtype == _NLMSG_DONE:
                    return bodies
                if mtype == _NLMSG_ERROR:
                    code = -struct.unpack_from("=i", body)[0]
                    if code:
                        raise IpsecKernelError(
                            f"XFRM dump refused: {errno.errorcode.get(code, code)}"
                        )
                    continue
                bodies.append(body)


def _ipv4(body: bytes, offset: int) -> str:
    return socket.inet_ntoa(body[offset : offset + 4])


def _attributes(body: bytes, offset: int) -> dict[int, bytes]:
    found = {}
    while offset + _ATTR.size <= len(body):
        length, kind = _ATTR.unpack_from(body, offset)
        if length < _ATTR.size:
            break
        found[kind & 0x3FFF] = body[offset + _ATTR.size : offset + length]
        offset += (length + 3) & ~3
    return found


def read_states() -> set[tuple[str, str, int]]:
    """Our ESP associations, as (src, dst, spi)."""
    found = set()
    for body in _dump(_GETSA):
        (reqid,) = struct.unpack_from("=I", body, _SA_REQID)
        (family,) = struct.unpack_from("=H", body, _SA_FAMILY)
        if body[_SA_PROTO] != _ESP or family != socket.AF_INET or vni_of(reqid) is None:
            continue
        (spi,) = struct.unpack_from("!I", body, _SA_SPI)
        found.add((_ipv4(body, _SA_SADDR), _ipv4(body, _SA_DADDR), spi))
    return found


def read_policies() -> set[Policy]:
    """Our outbound policies."""
    found = set()
    for body in _dump(_GETPOLICY):
        (priority,) = struct.unpack_from("=I", body, _POL_PRIORITY)
        (family,) = struct.unpack_from("=H", body, _SEL_FAMILY)
        if priority != POLICY_PRIORITY or body[_POL_DIR] != _POLICY_OUT or family != socket.AF_INET:
            continue
        mark = _attributes(body, _POL_SIZE).get(_XFRMA_MARK)
        if mark is None or vni_of(struct.unpack_from("=I", mark)[0]) is None:
            continue
        (port,) = struct.unpack_from("!H", body, _SEL_DPORT)
        found.add(
            Policy(
                _ipv4(body, _SEL_SADDR),
                _ipv4(body, _SEL_DADDR),
                port,
                struct.unpack_from("=I", mark)[0],
            )
        )
    return found


def command(step: IpsecStep) -> str:
    """The `ip` batch line of one step."""
    if isinstance(step, AddState):
        s = step.state
        return (
            f"xfrm state add src {s.src} dst {s.dst} proto esp spi {s.spi} reqid {s.reqid} "
            f"mode transport aead {ALGORITHM} 0x{s.key.hex()} {ICV_BITS}"
        )
    if isinstance(step, DeleteState):
        return f"xfrm state delete src {step.src} dst {step.dst} proto esp spi {step.spi}"
    policy = step.policy
    selector = (
        f"src {policy.src}/32 dst {policy.dst}/32 proto udp dport {policy.port} dir out "
        f"mark {policy.mark} mask 0xffffffff"
    )
    if isinstance(step, DeletePolicy):
        return f"xfrm policy delete {selector}"
    return (
        f"xfrm policy add {selector} priority {POLICY_PRIORITY} tmpl src {policy.src} dst {policy.dst} "
        f"proto esp reqid {policy.mark} mode transport"
    )


class IpsecKernel:
    def __init__(self, ip: str = "ip") -> None:
        self._ip = ip
        self._lock = asyncio.Lock()

    async def installed(self) -> tuple[set[tuple[str, str, int]], set[Policy]]:
        return await asyncio.to_thread(lambda: (read_states(), read_policies()))

    async def apply(self, steps: Iterable[IpsecStep]) -> None:
        """Apply `steps` as one batch per kind of step, in their order: `ip` ends a batch at
        the first XFRM command the kernel refuses, and a refused SA must not keep the
        policies out (they are what keeps the traffic from leaving in clear)."""
        runs: dict[type, list[str]] = {}
        for step in steps:
            runs.setdefault(type(step), []).append(command(step) + "\n")
        errors = []
        async with self._lock:
            for lines in runs.values():
                process = await asyncio.create_subprocess_exec(
                    self._ip,
                    "-batch",
                    "-",
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.DEVNULL,
                    stderr=asyncio.subprocess.PIPE,
                )
                _, stderr = await process.communicate("".join(lines).encode())
                if process.returncode != 0:
                    errors.append(stderr.decode(errors="replace").strip())
        if errors:
            raise IpsecKernelError(
                f"ip xfrm: {'; '.join(errors)} (an encrypted network needs ESP and {ALGORITHM} in "
                "every node's kernel: CONFIG_INET_ESP and CONFIG_CRYPTO_GCM; without them its "
                "traffic between nodes is dropped, never sent in clear)"
            )
