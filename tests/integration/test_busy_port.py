"""A node, or a dev cluster, started on an API port another process holds says so at once and
writes nothing: no cluster identity a later start would reuse, no banner for a cluster that
is someone else's."""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys

import pytest

pytestmark = pytest.mark.timeout(60)


def _hold(address: str, port: int) -> socket.socket:
    """A listener on `address:port`, as a running node's API would be."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((address, port))
    sock.listen()
    return sock


def _shoal(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "node", *argv],
        capture_output=True,
        text=True,
        timeout=45,
        env=dict(os.environ, SHOAL_QUIET="1"),
    )


def test_node_start_on_a_held_port_refuses_before_writing_anything(tmp_path):
    address, port = f"127.0.{random.randrange(20, 250)}.1", random.randrange(20000, 30000)
    data_dir = tmp_path / "node"
    with _hold(address, port):
        done = _shoal(
            "node",
            "start",
            "--data-dir",
            str(data_dir),
            "--advertise",
            address,
            "--api-port",
            str(port),
            "--runtime",
            "process",
        )
    assert done.returncode == 2
    assert f"{address}:{port} is in use" in done.stderr and "Traceback" not in done.stderr
    assert not data_dir.exists() or not any(data_dir.iterdir())


def test_dev_on_a_held_port_names_it_and_prints_no_banner(tmp_path):
    port = random.randrange(20000, 30000)
    with _hold("127.0.0.1", port):  # shoal dev's first node is always 127.0.0.1
        done = _shoal("dev", "--nodes", "1", "--data-dir", str(tmp_path), "--api-port", str(port))
    assert done.returncode == 1
    assert f"127.0.0.1:{port} is in use" in done.stderr
    assert "Shoal dev cluster" not in done.stdout
