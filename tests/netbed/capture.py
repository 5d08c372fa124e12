"""What crossed a link of the bed, read as an eavesdropper would.

    capture = Capture(bed.bridge)           # or one host's veth: host.veth
    ...                                     # traffic
    capture.close()
    b"marker" in b"".join(capture.frames)   # raw frames
    for segment in capture.segments(): ...  # IPv4 TCP and UDP payloads with their ports
    capture.streams()                       # each TCP direction reassembled, each UDP datagram

The packet socket puts the device in promiscuous mode, so on the bridge it sees the frames
forwarded between hosts as well as those to and from the machine (the test process).
"""

from __future__ import annotations

import socket
import struct
import threading
from collections import defaultdict
from dataclasses import dataclass

ETH_P_ALL = 0x0003
# The largest frame a packet socket hands over: a GSO super-packet can exceed 64 KiB.
_FRAME_LIMIT = 1 << 18
_RECEIVE_BUFFER = 16 << 20
# struct packet_mreq from <linux/if_packet.h>; socket.py does not export these.
_SOL_PACKET = 263
_PACKET_ADD_MEMBERSHIP = 1
_PACKET_MR_PROMISC = 1
TCP, UDP = 6, 17


@dataclass(frozen=True, slots=True)
class Segment:
    """The payload of one IPv4 TCP segment or UDP datagram (`seq` is 0 for UDP)."""

    protocol: int
    src: str
    sport: int
    dst: str
    dport: int
    seq: int
    payload: bytes


class Capture:
    """Every frame crossing one device, read with a packet socket in a thread."""

    def __init__(self, device: str) -> None:
        self._sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RECEIVE_BUFFER)
        self._sock.bind((device, 0))
        index = socket.if_nametoindex(device)
        membership = struct.pack("iHH8s", index, _PACKET_MR_PROMISC, 0, b"")
        self._sock.setsockopt(_SOL_PACKET, _PACKET_ADD_MEMBERSHIP, membership)
        self._sock.settimeout(0.2)
        self.frames: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                self.frames.append(self._sock.recv(_FRAME_LIMIT))
            except TimeoutError:
                continue

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._sock.close()

    def ip_protocols(self) -> set[int]:
        return {frame[23] for frame in self.frames if frame[12:14] == b"\x08\x00"}

    def segments(self) -> list[Segment]:
        return [s for s in map(_segment, self.frames) if s is not None]

    def streams(self) -> list[bytes]:
        """Each direction of each TCP connection as one byte string in sequence order
        (retransmissions counted once), and each UDP datagram: a needle split over two
        segments is still found whole."""
        datagrams = [s.payload for s in self.segments() if s.protocol == UDP]
        return list(self.flows().values()) + datagrams

    def flows(self) -> dict[tuple[str, int, str, int], bytes]:
        """Each direction of each TCP connection, by (src, sport, dst, dport), as one byte
        string in sequence order (retransmissions counted once)."""
        by_flow: dict[tuple, dict[int, bytes]] = defaultdict(dict)
        for s in self.segments():
            if s.protocol == TCP and s.payload:
                held = by_flow[(s.src, s.sport, s.dst, s.dport)]
                if len(s.payload) > len(held.get(s.seq, b"")):
                    held[s.seq] = s.payload
        flows = {}
        for flow, held in by_flow.items():
            first = min(held)  # sequence numbers wrap at 2**32
            flows[flow] = b"".join(held[seq] for seq in sorted(held, key=_after(first)))
        return flows


def _after(first: int):
    return lambda seq: (seq - first) % (1 << 32)


def _segment(frame: bytes) -> Segment | None:
    if len(frame) < 34 or frame[12:14] != b"\x08\x00":
        return None
    ip = frame[14:]
    header = (ip[0] & 0x0F) * 4
    total, fragment, protocol = struct.unpack("!H2xH1xB", ip[2:10])
    if protocol not in (TCP, UDP) or fragment & 0x1FFF:
        return None
    src, dst = socket.inet_ntoa(ip[12:16]), socket.inet_ntoa(ip[16:20])
    body = ip[header:total] if total else ip[header:]  # 0 in a GSO super-packet
    if protocol == UDP:
        sport, dport = struct.unpack("!HH", body[:4])
        return Segment(UDP, src, sport, dst, dport, 0, body[8:])
    sport, dport, seq, offset = struct.unpack("!HHI4xB", body[:13])
    return Segment(TCP, src, sport, dst, dport, seq, body[(offset >> 4) * 4 :])
