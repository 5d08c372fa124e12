"""Encrypted overlay networks against a real kernel, on two hosts of the test bed: each host
gets a plain network (VNI 4096) and an encrypted one (VNI 4097) from the overlay's own
shells (VXLAN devices, the nftables ruleset, the IPsec plan), then host 0 sends a marker to
host 1 over each while the test captures the underlay link.

The plain network's marker is on the wire. The encrypted network's never is: on a kernel
with ESP and AES-GCM it travels in ESP and arrives; on a kernel without them (this test
bed's) the policies drop it (the kernel counts it in XfrmOutNoStates) and the shell says
what the kernel lacks. VXLAN forged on the underlay (sent in clear by the test process, as
an intruder on the link would) reaches a task through the plain network and not through the
encrypted one. Removing the encrypted network leaves no policy, association or marking
rule behind."""

from __future__ import annotations

import json
import socket
import struct
import sys
import time

import pytest

from tests.netbed.capture import Capture

pytestmark = pytest.mark.e2e

SCRIPT = """
import asyncio, json, subprocess, sys
from netoverlay.overlay.ipsec import IpsecPlan, ipsec_steps, plan_ipsec
from netoverlay.overlay.ipsec_kernel import IpsecKernel, IpsecKernelError
from netoverlay.overlay.kernel import OverlayKernel
from netoverlay.overlay.plan import plan_links, steps
from netoverlay.overlay.types import NodeOverlay, OverlayNetwork

PLAIN = OverlayNetwork("plain", 4096, "10.200.0.0/20", "10.200.0.0/21")
SECRET = OverlayNetwork("secret", 4097, "10.200.16.0/20", "10.200.16.0/21", encrypted=True, network_id="n1")
phase, local, index, nodes = sys.argv[1], sys.argv[2], int(sys.argv[3]), tuple(sys.argv[4:])

async def converge(networks):
    overlay = NodeOverlay(local, nodes, networks)
    kernel, ipsec = OverlayKernel("shoal_overlay_test"), IpsecKernel()
    problems = []
    todo = ipsec_steps(plan_ipsec(overlay, bytes(32), 0.0), *await ipsec.installed())
    try:
        await ipsec.apply(todo)
    except IpsecKernelError as exc:
        problems.append(str(exc))
    await kernel.sync_rules(overlay)
    await kernel.apply(steps(plan_links(overlay, await kernel.underlay_mtu(local)), await kernel.read_links()))
    states, policies = await ipsec.installed()
    return {"problems": problems, "states": len(states), "policies": len(policies)}

def setup_bridges():
    for vni, subnet in ((4096, "10.200.0"), (4097, "10.200.16")):
        for command in (f"link add sov{vni} type bridge", f"addr add {subnet}.{index + 1}/20 dev sov{vni}",
                        f"link set sov{vni} up"):
            subprocess.run(["ip", *command.split()], check=True)

if phase == "up":
    setup_bridges()
    print(json.dumps(asyncio.run(converge((PLAIN, SECRET)))))
else:
    print(json.dumps(asyncio.run(converge((PLAIN,)))))
"""

LISTENER = """
import socket, sys
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind(("0.0.0.0", 9999))
while True:
    data, _ = sock.recvfrom(2048)
    print(data.decode(errors="replace"), flush=True)
"""

SENDER = """
import socket, sys, time
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(5):
    for address, marker in (("10.200.0.2", "PLAIN-MARKER-7f3a"), ("10.200.16.2", "SECRET-MARKER-9c1e")):
        sock.sendto(marker.encode(), (address, 9999))
    time.sleep(0.1)
"""


def _checksum(header: bytes) -> int:
    total = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def forged_vxlan(vni: int, mac: str, src: str, dst: str, payload: bytes) -> bytes:
    """A VXLAN packet's UDP payload carrying an IPv4/UDP datagram to `dst`:9999."""
    udp = struct.pack("!HHHH", 40000, 9999, 8 + len(payload), 0) + payload
    ip = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        20 + len(udp),
        1,
        0,
        64,
        17,
        0,
        socket.inet_aton(src),
        socket.inet_aton(dst),
    )
    ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
    ethernet = bytes.fromhex(mac.replace(":", "")) + bytes.fromhex("020000000009") + b"\x08\x00"
    return struct.pack("!II", 0x08000000, vni << 8) + ethernet + ip + udp


def _xfrm_stat(host) -> dict[str, int]:
    return {
        name: int(value)
        for name, value in (
            line.split() for line in host.run(["cat", "/proc/net/xfrm_stat"]).stdout.splitlines()
        )
    }


def _converge(host, phase: str, nodes: list[str]) -> dict:
    done = host.run(
        [sys.executable, "-c", SCRIPT, phase, host.address, str(host.index), *nodes], timeout=60
    )
    return json.loads(done.stdout)


def test_only_the_encrypted_networks_vxlan_is_protected_and_removing_it_leaves_nothing(
    netbed_factory, tmp_path
):
    bed = netbed_factory(2)
    sender, receiver = bed.hosts
    nodes = [h.address for h in bed.hosts]
    up = {h.name: _converge(h, "up", nodes) for h in bed.hosts}
    can_encrypt = up["h0"]["states"] > 0
    for seen in up.values():
        assert seen["policies"] == 1, (
            "one policy towards the other host, for the encrypted network only"
        )
        if not can_encrypt:
            assert "CONFIG_INET_ESP" in seen["problems"][0], seen
    # The receiver's bridges' addresses are learned by ARP on the plain network; on the
    # encrypted one ARP may be dropped with everything else, so the sender is told them.
    macs = {
        vni: json.loads(receiver.run(["ip", "-j", "link", "show", f"sov{vni}"]).stdout)[0][
            "address"
        ]
        for vni in (4096, 4097)
    }
    for vni, address in ((4096, "10.200.0.2"), (4097, "10.200.16.2")):
        sender.run(
            [
                "ip",
                "neigh",
                "replace",
                address,
                "lladdr",
                macs[vni],
                "dev",
                f"sov{vni}",
                "nud",
                "permanent",
            ]
        )
    listener = receiver.spawn([sys.executable, "-c", LISTENER], log_path=tmp_path / "received.log")
    time.sleep(0.5)
    before = _xfrm_stat(sender)
    capture = Capture(sender.veth)
    try:
        sender.run([sys.executable, "-c", SENDER])
        time.sleep(0.5)
    finally:
        capture.close()
    wire = b"".join(capture.frames)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as intruder:
        for vni, subnet, marker in (
            (4096, "10.200.0", b"FORGED-PLAIN-2b7d"),
            (4097, "10.200.16", b"FORGED-SECRET-e41a"),
        ):
            for _ in range(3):
                intruder.sendto(
                    forged_vxlan(vni, macs[vni], f"{subnet}.1", f"{subnet}.2", marker),
                    (receiver.address, 4789),
                )
    time.sleep(0.5)
    received = (tmp_path / "received.log").read_text()
    listener.kill()
    assert "FORGED-PLAIN-2b7d" in received, (
        "plain VXLAN forged on the underlay reaches a plain network"
    )
    assert "FORGED-SECRET-e41a" not in received, (
        "plain VXLAN forged for the encrypted network got in"
    )
    assert b"PLAIN-MARKER-7f3a" in wire, (
        "the plain network's VXLAN is on the wire in clear (and the capture works)"
    )
    assert "PLAIN-MARKER-7f3a" in received
    assert b"SECRET-MARKER-9c1e" not in wire, (
        "the encrypted network's payload was on the wire in clear"
    )
    if can_encrypt:
        assert 50 in capture.ip_protocols(), "the encrypted network's VXLAN travels in ESP"
        assert "SECRET-MARKER-9c1e" in received, "and arrives"
    else:
        after = _xfrm_stat(sender)
        assert after["XfrmOutNoStates"] > before["XfrmOutNoStates"], (
            "without an association the policy drops the packets"
        )
        assert "SECRET-MARKER-9c1e" not in received
    down = {h.name: _converge(h, "down", nodes) for h in bed.hosts}
    assert all((seen["states"], seen["policies"]) == (0, 0) for seen in down.values()), down
    for host in bed.hosts:
        rules = host.run(["nft", "list", "table", "ip", "shoal_overlay_test"]).stdout
        assert "ipsec" not in rules, rules
