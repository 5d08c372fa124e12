"""`shoal dev --nodes N`: a local cluster in the foreground that Ctrl-C stops cleanly."""

from __future__ import annotations

import json
import os
import random
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


def test_dev_starts_a_cluster_with_a_demo_and_ctrl_c_stops_every_node(tmp_path):
    port = random.randrange(20000, 30000, 10)
    demo = port + 5
    dev = subprocess.Popen([sys.executable, "-m", "node", "dev", "--nodes", "2", "--data-dir",
                            str(tmp_path), "--api-port", str(port), "--demo-port", str(demo)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           env=dict(os.environ, SHOAL_QUIET="1"))
    try:
        banner = dev.stdout.readline()
        assert "Shoal dev cluster: 2 node(s)" in banner, dev.stderr.read()
        deadline = time.monotonic() + 30
        while True:
            nodes = _get(f"http://127.0.0.2:{port}/v1/nodes")
            if len(nodes) == 2 and all(n["status"] == "ready" for n in nodes):
                break
            assert time.monotonic() < deadline, nodes
            time.sleep(0.2)
        assert {n["name"] for n in nodes} == {"node1", "node2"}
        assert "Demo service 'hello' (created)" in dev.stdout.readline()
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
        dev.send_signal(signal.SIGINT)
        code = dev.wait(30)
        # Tasks outlive their node by design (a restarted node adopts them): end the demo's.
        for pid in processes_working_under(tmp_path):
            os.kill(pid, signal.SIGKILL)
    assert code == 0
    # Ctrl-C stopped (and reaped) every node: none of them is left running.
    for pid in children:
        assert not os.path.exists(f"/proc/{pid}")
