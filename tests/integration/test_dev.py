"""`shoal dev --nodes N`: a local cluster in the foreground that Ctrl-C stops cleanly."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

from node.pki.contexts import client_context
from tests.support import processes_working_under

pytestmark = pytest.mark.timeout(120)


def _shoal(*argv: str, env: dict) -> dict:
    """A hint's command, run as printed in the environment it set up."""
    done = subprocess.run(
        [sys.executable, "-m", "node", *argv, "-o", "json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


# Ctrl-C, also when a shell that started it in the background set SIGINT to be ignored (as a
# non-interactive shell does for `cmd &`); SIGTERM, which by default ended `shoal dev` alone.
@pytest.mark.parametrize(
    "stop, before",
    [(signal.SIGINT, None), (signal.SIGINT, _ignore_sigint), (signal.SIGTERM, None)],
    ids=["ctrl-c", "ctrl-c-ignored-by-shell", "sigterm"],
)
def test_dev_starts_a_cluster_with_a_demo_and_a_signal_stops_every_node(tmp_path, stop, before):
    port = random.randrange(20000, 30000, 10)
    demo = port + 5
    dev = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "node",
            "dev",
            "--nodes",
            "2",
            "--data-dir",
            str(tmp_path),
            "--api-port",
            str(port),
            "--demo-port",
            str(demo),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, SHOAL_QUIET="1"),
        preexec_fn=before,
    )
    children: list[str] = []
    try:
        banner = dev.stdout.readline()
        assert "Shoal dev cluster: 2 node(s)" in banner, dev.stderr.read()
        dashboard = banner.rstrip().rpartition(" ")[2]
        assert dashboard.startswith(f"https://127.0.0.1:{port}/ui#token=") and len(dashboard) > 60
        # The page itself needs no token (a browser cannot send one); its API calls do.
        ca = client_context((tmp_path / "node1" / "tls" / "ca.pem").read_bytes())
        with urllib.request.urlopen(dashboard.partition("#")[0], timeout=5, context=ca) as page:
            assert page.status == 200
        assert "Demo service 'hello' (created)" in dev.stdout.readline()
        assert dev.stdout.readline().strip() == "In another shell:"
        # The hints work as printed: the CLI finds node1's socket with no address or token.
        variable, _, value = dev.stdout.readline().strip().removeprefix("export ").partition("=")
        hinted = {k: v for k, v in os.environ.items() if k not in ("SHOAL_ADDR", "SHOAL_TOKEN")}
        hinted[variable] = value
        hints = [dev.stdout.readline().split() for _ in range(3)]
        assert hints == [
            ["shoal", "service", "ps", "hello"],
            ["shoal", "cluster", "status"],
            ["shoal", "node", "ls"],
        ]
        deadline = time.monotonic() + 30
        while True:
            nodes = _shoal(*hints[2][1:], env=hinted)
            if len(nodes) == 2 and all(n["status"] == "ready" for n in nodes):
                break
            assert time.monotonic() < deadline, nodes
            time.sleep(0.2)
        assert {n["name"] for n in nodes} == {"node1", "node2"}
        assert _shoal(*hints[1][1:], env=hinted)["leader"]["name"] == "node1"
        assert len(_shoal(*hints[0][1:], env=hinted)) == 3
        # The demo answers through the routing mesh on every node's address.
        for address in ("127.0.0.1", "127.0.0.2"):
            while True:
                try:
                    with urllib.request.urlopen(f"http://{address}:{demo}/", timeout=2) as page:
                        assert page.status == 200
                        break
                except OSError:
                    assert time.monotonic() < deadline + 60, f"no demo on {address}"
                    time.sleep(0.3)
        # The node processes are children of `shoal dev`.
        children = subprocess.run(
            ["pgrep", "-P", str(dev.pid)], capture_output=True, text=True
        ).stdout.split()
        assert len(children) == 2
    finally:
        dev.send_signal(stop)
        try:
            code = dev.wait(30)
        except subprocess.TimeoutExpired:
            # A failed stop must leave nothing running for the tests after this one.
            for pid in [*map(int, children), dev.pid]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            raise
        finally:
            # Whatever a failed stop left behind must not outlive the test.
            left = processes_working_under(tmp_path)
            for pid in left:
                os.kill(pid, signal.SIGKILL)
    assert code == 0
    # The demo's task processes were ended with the cluster (a real node's outlive it).
    assert not left, f"task processes left running: {left}"
    # Ctrl-C stopped (and reaped) every node: none of them is left running.
    for pid in children:
        assert not os.path.exists(f"/proc/{pid}")


def _start_dev(base, port: int, nodes: int) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "node",
            "dev",
            "--nodes",
            str(nodes),
            "--data-dir",
            str(base),
            "--api-port",
            str(port),
            "--demo-port",
            str(port + 5),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, SHOAL_QUIET="1"),
    )


def test_the_same_command_brings_a_three_voter_cluster_back(tmp_path):
    """Each restarted voter waits for a leader before it holds the state again, so the nodes
    of a cluster coming back must be started together, not each once the one before is
    healthy (it never would be alone)."""
    port = random.randrange(20000, 30000, 10)  # below the ephemeral range (32768+)
    for run in ("first", "again"):
        dev = _start_dev(tmp_path, port, 3)
        try:
            banner = dev.stdout.readline()
            assert "Shoal dev cluster: 3 node(s)" in banner, (run, dev.stderr.read())
            env = {k: v for k, v in os.environ.items() if k not in ("SHOAL_ADDR", "SHOAL_TOKEN")}
            env["SHOAL_DATA_DIR"] = str(tmp_path / "node3")
            deadline, nodes = time.monotonic() + 60, []
            while True:
                cluster = _shoal("cluster", "status", env=env)
                nodes = _shoal("node", "ls", env=env)
                if len(cluster["voters"]) == 3 and all(n["status"] == "ready" for n in nodes):
                    break
                assert time.monotonic() < deadline, (run, nodes)
                time.sleep(0.2)
        finally:
            dev.send_signal(signal.SIGINT)
            assert dev.wait(60) == 0
            for pid in processes_working_under(tmp_path):
                os.kill(pid, signal.SIGKILL)
