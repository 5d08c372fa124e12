"""`shoal dev --nodes N`: a local cluster in the foreground that Ctrl-C stops cleanly."""

from __future__ import annotations

import contextlib
import json
import os
import random
import shlex
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.support import processes_working_under

pytestmark = pytest.mark.timeout(120)


def _get(url: str):
    with urllib.request.urlopen(url, timeout=2) as resp:
        return json.load(resp)


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


# Ctrl-C, also when a shell that started it in the background set SIGINT to be ignored (as a
# non-interactive shell does for `cmd &`); SIGTERM, which by default ended `shoal dev` alone.
@pytest.mark.parametrize("stop, before", [(signal.SIGINT, None),
                                          (signal.SIGINT, _ignore_sigint),
                                          (signal.SIGTERM, None)],
                         ids=["ctrl-c", "ctrl-c-ignored-by-shell", "sigterm"])
def test_dev_starts_a_cluster_with_a_demo_and_a_signal_stops_every_node(tmp_path, stop, before):
    port = random.randrange(20000, 30000, 10)
    demo = port + 5
    dev = subprocess.Popen([sys.executable, "-m", "node", "dev", "--nodes", "2", "--data-dir",
                            str(tmp_path), "--api-port", str(port), "--demo-port", str(demo)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           env=dict(os.environ, SHOAL_QUIET="1"), preexec_fn=before)
    children: list[str] = []
    try:
        banner = dev.stdout.readline()
        assert "Shoal dev cluster: 2 node(s)" in banner, dev.stderr.read()
        assert banner.rstrip().endswith(f"dashboard http://127.0.0.1:{port}/ui")
        deadline = time.monotonic() + 30
        while True:
            nodes = _get(f"http://127.0.0.2:{port}/v1/nodes")
            if len(nodes) == 2 and all(n["status"] == "ready" for n in nodes):
                break
            assert time.monotonic() < deadline, nodes
            time.sleep(0.2)
        assert {n["name"] for n in nodes} == {"node1", "node2"}
        assert "Demo service 'hello' (created)" in dev.stdout.readline()
        # The commands it suggests work as printed (global options before the command too).
        hints = []
        while not (line := dev.stdout.readline()).startswith("Ctrl-C"):
            hints.append(shlex.split(line))
        assert ["shoal", "--addr", f"http://127.0.0.1:{port}", "cluster", "status"] in hints
        for shoal, *args in hints:
            assert shoal == "shoal"
            run = subprocess.run([sys.executable, "-m", "node", *args], capture_output=True,
                                 text=True, timeout=30, env={k: v for k, v in os.environ.items()
                                                             if k != "SHOAL_ADDR"})
            assert run.returncode == 0, (args, run.stderr)
            assert "hello" in run.stdout if "ps" in args else "node" in run.stdout, run.stdout
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
        children = subprocess.run(["pgrep", "-P", str(dev.pid)], capture_output=True,
                                  text=True).stdout.split()
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
    return subprocess.Popen([sys.executable, "-m", "node", "dev", "--nodes", str(nodes),
                             "--data-dir", str(base), "--api-port", str(port),
                             "--demo-port", str(port + 5)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, SHOAL_QUIET="1"))


def test_the_same_command_brings_a_three_voter_cluster_back(tmp_path):
    """Each restarted voter waits for a leader before it holds the state again, so the nodes
    of a cluster coming back must be started together, not each once the one before is
    healthy (it never would be alone)."""
    port = random.randrange(30000, 40000, 10)
    for run in ("first", "again"):
        dev = _start_dev(tmp_path, port, 3)
        try:
            banner = dev.stdout.readline()
            assert "Shoal dev cluster: 3 node(s)" in banner, (run, dev.stderr.read())
            deadline, nodes = time.monotonic() + 60, []
            while True:
                try:
                    cluster = _get(f"http://127.0.0.3:{port}/v1/cluster")
                    nodes = _get(f"http://127.0.0.3:{port}/v1/nodes")
                    if (len(cluster["voters"]) == 3
                            and all(n["status"] == "ready" for n in nodes)):
                        break
                except OSError:
                    pass
                assert time.monotonic() < deadline, (run, nodes)
                time.sleep(0.2)
        finally:
            dev.send_signal(signal.SIGINT)
            assert dev.wait(60) == 0
            for pid in processes_working_under(tmp_path):
                os.kill(pid, signal.SIGKILL)
