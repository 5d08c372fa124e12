"""Three machines on one: namespace hosts on a bridge, each with a private Docker Engine that
holds the benchmark's busybox image. Swarm and Shoal are measured on the same kind of bed.

    with DockerHosts(3) as hosts:
        hosts.bed.hosts[0].address, hosts.daemons[0].url
        hosts.pull_cable(1)        # the machine is gone from the network, as if it died
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from bench.refs.support import tool_path
from bench.stats import print_figures, summarize_runs
from tests.e2e.conftest import BUSYBOX_IMAGE, _build_busybox, _image_exists
from tests.netbed import Faults, NetBed
from tests.netbed.dockerd import PrivateDockerd
from tests.support import docker_available

IMAGE = BUSYBOX_IMAGE
# A busybox web server: what the orchestration benchmarks run 30 replicas of.
HTTPD = ["httpd", "-f", "-p", "80", "-h", "/tmp"]


def unavailable_reason() -> str | None:
    """None when a bed with private dockerds can be built here, otherwise why not."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "nsenter", "nft", "iptables", "dockerd", "docker", "busybox"):
        if tool_path(tool) is None:
            return f"{tool} is not installed"
    return docker_available()  # the image is made on the machine's engine, then copied


class DockerHosts:
    """A bed of `count` hosts with a dockerd each; closing it removes everything it made."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.bed: NetBed | None = None
        self.daemons: list[PrivateDockerd] = []
        self.faults: Faults | None = None

    def __enter__(self) -> DockerHosts:
        if not _image_exists(IMAGE):
            _build_busybox(IMAGE)
        self.bed = NetBed.create(self.count)
        try:
            with ThreadPoolExecutor(self.count) as pool:
                self.daemons = list(pool.map(self._daemon_with_image, self.bed.hosts))
            self.faults = Faults(self.bed)
        except BaseException:
            self.bed.close()
            raise
        return self

    @staticmethod
    def _daemon_with_image(host) -> PrivateDockerd:
        daemon = host.start_dockerd()
        daemon.load_from(IMAGE)
        return daemon

    def pull_cable(self, index: int) -> None:
        """Take host `index` off the network: a dead machine, to everyone else."""
        self.faults.link_down(self.bed.hosts[index])

    def __exit__(self, *exc_info: object) -> None:
        self.bed.close()


def wait_until(
    check: Callable[[], object], timeout: float, what: str, interval: float = 0.1
) -> float:
    """Call `check` until it is truthy; returns the monotonic time it first was."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return time.monotonic()
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}; last: {last!r}")


def run_orchestration(prog: str, title: str, system: str, one_run: Callable[[int], dict]) -> None:
    """The command line Shoal's and Swarm's 3-host benchmarks share: `one_run(replicas)`
    --runs times (create -> running, then a node's death -> its tasks elsewhere), printed and
    summarised the same way, ending with RESULT."""
    parser = argparse.ArgumentParser(prog=prog)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--replicas", type=int, default=30)
    parser.add_argument("--quick", action="store_true", help="a small smoke-test size")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.replicas = 1, 6
    reason = unavailable_reason()
    if reason:
        raise SystemExit(f"{prog} needs namespace hosts with Docker: {reason}")
    runs = []
    for i in range(args.runs):
        run = one_run(args.replicas)
        runs.append(run)
        print(
            f"run {i + 1}: {args.replicas} running after {run['create_to_running_s']:.2f} s; "
            f"node gone -> its {run['tasks_on_dead_node']:.0f} tasks running elsewhere after "
            f"{run['node_death_to_replaced_s']:.2f} s",
            flush=True,
        )
    figures = summarize_runs(runs)
    print_figures(title, figures, args.runs)
    print(
        "RESULT "
        + json.dumps(
            {"system": system, "hosts": 3, "replicas": args.replicas, "runs": args.runs, **figures}
        )
    )
