"""The echo workload on bed hosts: start servers, probe between hosts, read server counters."""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path

from tests.netbed.bed import Host
from tests.netbed.process import HostProcess

ECHO_SCRIPT = Path(__file__).with_name("echo.py")
ECHO_PORT = 7000


def start_echo(host: Host, port: int = ECHO_PORT) -> HostProcess:
    """An echo server on `host`, returned once its sockets are bound."""
    process = host.spawn(
        [sys.executable, str(ECHO_SCRIPT), "serve", "--port", str(port)], notify=True
    )
    process.wait_ready()
    return process


def udp_probe(
    source: Host, target: Host, count: int = 20, timeout: float = 0.5, port: int = ECHO_PORT
) -> int:
    """How many of `count` datagrams sent from `source` came back echoed by `target`."""
    done = source.run(
        [
            sys.executable,
            str(ECHO_SCRIPT),
            "udp",
            "--to",
            f"{target.address}:{port}",
            "--count",
            str(count),
            "--timeout",
            str(timeout),
        ]
    )
    return json.loads(done.stdout)["echoed"]


def tcp_probe(source: Host, target: Host, timeout: float = 0.5, port: int = ECHO_PORT) -> bool:
    """Whether `source` can open a TCP connection to `target` and get its line echoed."""
    done = source.run(
        [
            sys.executable,
            str(ECHO_SCRIPT),
            "tcp",
            "--to",
            f"{target.address}:{port}",
            "--timeout",
            str(timeout),
        ]
    )
    return json.loads(done.stdout)["ok"]


def udp_received(host: Host, port: int = ECHO_PORT, timeout: float = 5.0) -> int:
    """Datagrams `host`'s echo server has received, asked from the test process over the bridge
    (partitions between hosts do not cut that path)."""
    with socket.create_connection((host.address, port), timeout=timeout) as sock:
        sock.sendall(b"STATS\n")
        reply = sock.makefile("rb").readline()
    return json.loads(reply)["udp_received"]
