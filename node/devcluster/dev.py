"""`shoal dev --nodes N`: N real node processes on 127.0.0.1 ... 127.0.0.N, in the foreground,
with a demo service published on every node through the routing mesh.

Each node has its own data dir under the base dir; run it again and the same cluster comes
back (the nodes remember their flags). Ctrl-C stops them all cleanly, and so do SIGTERM and
SIGHUP: killed any other way it would leave its nodes running.
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import signal
import ssl
import sys
import time
import urllib.error
import urllib.request

from node.devcluster.localcluster import NodeProc, stop_all
from node.pki.contexts import client_context
from node.ports import port_taken


def _verified(ca_file: str) -> ssl.SSLContext:
    with open(ca_file, "rb") as f:
        return client_context(f.read())


def wait_healthy(
    address: str, ca_file: str, timeout: float = 30.0, *, answering: bool = False
) -> bool:
    """Until the node holds the cluster's state (`/healthz` 200), or with `answering` until
    its API answers at all: a restarted voter catches up only once enough voters are back to
    elect a leader, so the others must be started before the first one is healthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            # The CA file is there once the node has started: until then, OSError.
            with urllib.request.urlopen(
                f"https://{address}/healthz", timeout=1, context=_verified(ca_file)
            ) as resp:
                if resp.status == 200:
                    return True
        except urllib.error.HTTPError:  # 503: up, still catching up
            if answering:
                return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    return False


def demo_service(port: int) -> dict:
    """A small web service that runs anywhere: Python's http.server as a plain process, one
    replica per node (up to 3), health-checked, published on `port` of every node."""
    return {
        "name": "hello",
        "image": "process",
        "replicas": 3,
        "command": ["sh", "-c", f"exec {sys.executable} -m http.server $PORT"],
        "ports": [f"{port}:8000"],
        "health": {
            "kind": "http",
            "path": "/",
            "interval": "2s",
            "timeout": "1s",
            "retries": 3,
            "start_period": "5s",
        },
    }


def create_demo(api: str, token: str, port: int, ca_file: str) -> str:
    """Create the demo service; say so if it already exists (a restarted dev cluster)."""
    request = urllib.request.Request(
        f"https://{api}/v1/services",
        method="POST",
        data=json.dumps(demo_service(port)).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10, context=_verified(ca_file)):
            return "created"
    except urllib.error.HTTPError as exc:
        if exc.code == 409:
            return "already there"
        return f"not created: {exc.read().decode(errors='replace').strip()}"


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run_dev_cluster(
    count: int,
    base_dir: str,
    api_port: int,
    *,
    runtime: str = "process",
    demo_port: int = 8080,
    log_format: str = "text",
) -> int:
    os.makedirs(base_dir, exist_ok=True)
    # Set, not inherited: a shell starting us in the background ignores SIGINT for us, and
    # the default SIGTERM and SIGHUP would end this process without stopping its nodes.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _interrupt)
    nodes = [
        NodeProc(
            i,
            0,
            base_dir,
            ["--runtime", runtime, "--log-format", log_format],
            api_port=api_port,
            prefix="node",
            image_pull="missing",
        )
        for i in range(1, count + 1)
    ]
    restarting = os.path.exists(os.path.join(nodes[0].data_dir, "node.json"))
    # Another dev cluster on these addresses would answer every health check for ours.
    taken = next(filter(None, (port_taken(n.address, api_port) for n in nodes)), "")
    if taken:
        print(f"shoal dev: {taken} (stop it, or pick another --api-port)", file=sys.stderr)
        return 1
    try:
        for node in nodes:
            token = None
            if node.index > 1:
                with open(nodes[0].token_path) as f:
                    token = f.read().strip()
            node.start(join=nodes[0].api if token else None, token=token)
            # A new cluster: each node must hold the state before the next one joins through
            # the first. A cluster coming back: each must only answer, as they elect together.
            if not wait_healthy(node.api, node.ca_file, answering=restarting):
                print(f"{node.name} did not come up; see {node.log_path}", file=sys.stderr)
                return 1
        for node in nodes:
            if not wait_healthy(node.api, node.ca_file):
                print(
                    f"{node.name} did not catch up with the cluster; see {node.log_path}",
                    file=sys.stderr,
                )
                return 1
        # The dashboard's page reads the API token from its address's fragment, which the
        # browser keeps to itself (it is never sent to a server).
        where = "127.0.0.1" if count == 1 else f"127.0.0.1-127.0.0.{count}"
        print(
            f"Shoal dev cluster: {count} node(s) on {where}, "
            f"API port {api_port}; logs and data in {base_dir}; dashboard "
            f"https://127.0.0.1:{api_port}/ui#token={nodes[0].api_token}"
        )
        if demo_port:
            outcome = create_demo(nodes[0].api, nodes[0].api_token, demo_port, nodes[0].ca_file)
            print(
                f"Demo service 'hello' ({outcome}): curl http://127.0.0.{count}:{demo_port}/ "
                f"reaches it through any node"
            )
        # The CLI reaches a node through its socket in its data dir (no token needed there).
        print(
            f"In another shell:\n  export SHOAL_DATA_DIR={shlex.quote(nodes[0].data_dir)}\n"
            f"  shoal service ps hello\n  shoal cluster status\n  shoal node ls\n"
            f"Ctrl-C stops the cluster; run the same command again to bring it back.",
            flush=True,
        )
        # A node that dies stays dead (kill one to watch the cluster heal); the others go on.
        running = {node.proc.pid: node for node in nodes if node.proc}
        while running:
            try:
                pid, status = os.wait()  # sleeps until a node exits
            except ChildProcessError:
                break
            node = running.pop(pid, None)
            if node is not None:
                print(
                    f"{node.name} exited ({os.waitstatus_to_exitcode(status)}); "
                    f"see {node.log_path}",
                    file=sys.stderr,
                )
        return 1
    except KeyboardInterrupt:
        print("stopping the cluster ...", file=sys.stderr)
        return 0
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)  # a second Ctrl-C must not cut the stops short
        stop_all(nodes)
        if runtime == "process":
            ended = asyncio.run(end_task_processes(nodes))
            if ended:
                print(
                    f"ended {ended} task process(es); the same command starts them again",
                    file=sys.stderr,
                )


async def end_task_processes(nodes: list[NodeProc]) -> int:
    """Tasks outlive a real node by design (a restarted node adopts them), but a demo that
    leaves its task processes behind surprises whoever stops it: end them, as `nomad agent
    -dev` ends its allocations. The services stay in the cluster's state."""
    from node.runtime import ProcessDriver

    ended = 0
    for node in nodes:
        driver = ProcessDriver(node.data_dir)
        for seen in await driver.list_owned():
            await driver.remove(seen.task_id)
            ended += 1
    return ended
