"""`shoal dev --nodes N`: N real node processes on 127.0.0.1 ... 127.0.0.N, in the foreground.

Each node has its own data dir under the base dir; run it again and the same cluster comes
back (the nodes remember their flags). Ctrl-C stops them all cleanly.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

from node.config import TOKEN_FILE

STOP_TIMEOUT = 15.0


def node_command(index: int, base_dir: str, api_port: int) -> list[str]:
    data_dir = os.path.join(base_dir, f"node{index}")
    argv = [sys.executable, "-m", "node", "node", "start", "--data-dir", data_dir]
    if os.path.exists(os.path.join(data_dir, "node.json")):
        return argv  # a restart needs only the data dir
    argv += ["--name", f"node{index}", "--advertise", f"127.0.0.{index}",
             "--api-port", str(api_port), "--raft-port", str(api_port + 1),
             "--gossip-port", str(api_port + 2), "--dns-port", str(api_port + 3)]
    if index > 1:
        token_path = os.path.join(base_dir, "node1", TOKEN_FILE)
        with open(token_path) as f:
            token = f.read().strip()
        argv += ["--join", f"127.0.0.1:{api_port}", "--token", token]
    return argv


def wait_healthy(address: str, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://{address}/healthz", timeout=1) as resp:
                if resp.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    return False


def run_dev_cluster(count: int, base_dir: str, api_port: int) -> int:
    os.makedirs(base_dir, exist_ok=True)
    procs: list[subprocess.Popen] = []
    env = dict(os.environ, SHOAL_QUIET="1")

    def stop_all() -> None:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        for proc in procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    try:
        for index in range(1, count + 1):
            log = open(os.path.join(base_dir, f"node{index}.log"), "ab")
            procs.append(subprocess.Popen(node_command(index, base_dir, api_port), env=env,
                                          stdout=log, stderr=subprocess.STDOUT))
            log.close()
            if not wait_healthy(f"127.0.0.{index}:{api_port}"):
                print(f"node{index} did not come up; see {base_dir}/node{index}.log",
                      file=sys.stderr)
                stop_all()
                return 1
        print(f"Shoal dev cluster: {count} node(s) on 127.0.0.1-127.0.0.{count}, "
              f"API port {api_port}, logs and data in {base_dir}\n"
              f"  shoal --addr http://127.0.0.1:{api_port} cluster status\n"
              f"  shoal node ls\n"
              f"Ctrl-C stops the cluster; run the same command again to bring it back.")
        while all(p.poll() is None for p in procs):
            try:
                os.waitpid(-1, 0)
            except ChildProcessError:
                break
        failed = [i + 1 for i, p in enumerate(procs) if p.poll() is not None]
        print(f"node(s) {failed} exited; stopping the cluster", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("stopping the cluster ...", file=sys.stderr)
        return 0
    finally:
        stop_all()
