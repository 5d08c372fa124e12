"""A UDP+TCP echo server and its probes: the stand-in workload that shows what the bed's faults do.

Run by path inside a bed host (it imports nothing from the project):

    echo.py serve --port 7000            UDP echo, TCP echo; a TCP line "STATS" answers the
                                         number of UDP datagrams received so far (JSON)
    echo.py udp --to ADDR:PORT --count N sends N numbered datagrams, prints
                                         {"sent": N, "echoed": K} (K distinct echoes)
    echo.py tcp --to ADDR:PORT           connect, send a line, read it back, prints {"ok": ...}

`serve` reports READY=1 on $NOTIFY_SOCKET once both sockets are bound.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import time


class _UdpEcho(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.received = 0
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        self.received += 1
        self.transport.sendto(data, addr)


def _notify_ready() -> None:
    path = os.environ.get("NOTIFY_SOCKET")
    if path:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.sendto(b"READY=1", path)


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    _, udp = await loop.create_datagram_endpoint(_UdpEcho, local_addr=("0.0.0.0", port))

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            first = await reader.readline()
            if first == b"STATS\n":
                writer.write(json.dumps({"udp_received": udp.received}).encode() + b"\n")
            else:
                writer.write(first)
                while data := await reader.read(65536):
                    writer.write(data)
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "0.0.0.0", port)
    _notify_ready()
    print(f"echo serving udp+tcp on port {port}", flush=True)
    async with server:
        await server.serve_forever()


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


def probe_udp(to: tuple[str, int], count: int, timeout: float, gap: float) -> dict:
    """Send `count` datagrams `gap` seconds apart; count distinct echoes until `timeout` of quiet."""
    echoed: set[int] = set()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        for seq in range(count):
            sock.sendto(seq.to_bytes(4, "big") + b"echo-probe", to)
            time.sleep(gap)  # pacing keeps socket buffers from adding loss of their own
            _drain(sock, echoed)
        sock.settimeout(timeout)
        while len(echoed) < count:
            try:
                echoed.add(int.from_bytes(sock.recv(2048)[:4], "big"))
            except (TimeoutError, ConnectionRefusedError):
                break
    return {"sent": count, "echoed": len(echoed)}


def _drain(sock: socket.socket, echoed: set[int]) -> None:
    while True:
        try:
            echoed.add(int.from_bytes(sock.recv(2048)[:4], "big"))
        except (BlockingIOError, ConnectionRefusedError):
            return


def probe_tcp(to: tuple[str, int], timeout: float) -> dict:
    try:
        with socket.create_connection(to, timeout=timeout) as sock:
            sock.sendall(b"hello\n")
            reply = sock.recv(64)
        return {
            "ok": reply == b"hello\n",
            "error": "" if reply == b"hello\n" else f"reply {reply!r}",
        }
    except OSError as exc:
        return {"ok": False, "error": f"{exc.__class__.__name__}: {exc}"}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    modes = parser.add_subparsers(dest="mode", required=True)
    modes.add_parser("serve").add_argument("--port", type=int, required=True)
    udp = modes.add_parser("udp")
    udp.add_argument("--to", type=_address, required=True)
    udp.add_argument("--count", type=int, default=10)
    udp.add_argument("--timeout", type=float, default=1.0)
    udp.add_argument("--gap", type=float, default=0.0005)
    tcp = modes.add_parser("tcp")
    tcp.add_argument("--to", type=_address, required=True)
    tcp.add_argument("--timeout", type=float, default=1.0)
    args = parser.parse_args()
    if args.mode == "serve":
        asyncio.run(serve(args.port))
    elif args.mode == "udp":
        print(json.dumps(probe_udp(args.to, args.count, args.timeout, args.gap)))
    else:
        print(json.dumps(probe_tcp(args.to, args.timeout)))


if __name__ == "__main__":
    main()
