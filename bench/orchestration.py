"""Shoal's orchestration on 3 machines, measured exactly as bench.refs.swarm measures Swarm.

    python -m bench.orchestration [--runs 3] [--replicas 30] [--quick]

Per run, on a fresh bed of 3 namespace hosts with a private dockerd each (bench.refs.hosts):
one `shoal node` per host (`--runtime docker`, DOCKER_HOST pointing at its host's engine), h0
bootstraps and the others join. Times `POST /v1/services` of N busybox httpd replicas with a
published port until the API shows N running; then pulls the network cable of a non-leader
holding tasks and times until N tasks run on the other two. Medians with min-max; ends with one
`RESULT {json}` line.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

from bench.refs.hosts import HTTPD, IMAGE, DockerHosts, run_orchestration
from node.client import ShoalClient
from node.config import load
from node.devcluster.localcluster import wait_for
from node.pki.contexts import client_context

SERVICE = "orchbench"
API_PORT = 7420


class BedCluster:
    """A Shoal node on every host of a DockerHosts bed; the bed stops the processes."""

    def __init__(self, hosts: DockerHosts, extra_args: tuple[str, ...] = ()) -> None:
        self.hosts = hosts
        self.extra_args = extra_args
        self.names = [host.name for host in hosts.bed.hosts]
        self.token = ""
        self.api_token = ""

    def api(self, i: int) -> str:
        return f"{self.hosts.bed.hosts[i].address}:{API_PORT}"

    def client(self, i: int, timeout: float = 10.0) -> ShoalClient:
        # The benchmark talks from the bridge address, not loopback: the API wants the token,
        # over TLS verified against the cluster's CA (as the first node holds it).
        ca_file = self._data_dir(0) / "tls" / "ca.pem"
        return ShoalClient(
            self.api(i),
            self.api_token,
            timeout=timeout,
            ssl_context=lambda: client_context(ca_file.read_bytes()),
        )

    def _data_dir(self, i: int) -> Path:
        return self.hosts.bed.workdir / f"shoal-{self.names[i]}"

    async def get(self, i: int, path: str):
        async with self.client(i) as client:
            return await client.get(path)

    def _spawn(self, i: int, join: bool) -> None:
        host, daemon = self.hosts.bed.hosts[i], self.hosts.daemons[i]
        argv = [
            sys.executable,
            "-m",
            "node",
            "node",
            "start",
            "--name",
            host.name,
            "--data-dir",
            str(self._data_dir(i)),
            "--advertise",
            host.address,
            "--runtime",
            "docker",
            "--image-pull",
            "never",
            *self.extra_args,
        ]
        if join:
            argv += ["--join", self.api(0), "--token", self.token]
        host.spawn(
            argv,
            env={"DOCKER_HOST": daemon.url, "SHOAL_QUIET": "1"},
            cwd=Path(__file__).resolve().parent.parent,
        )

    async def start(self) -> None:
        self._spawn(0, join=False)
        token_path = self._data_dir(0) / "join-token"

        async def token_written() -> bool:
            return token_path.exists() and bool(token_path.read_text().strip())

        await wait_for(token_written, timeout=60, what="the first node's join token")
        self.token = token_path.read_text().strip()
        self.api_token = load(str(self._data_dir(0))).identity.keys.api_token
        for i in range(1, len(self.names)):
            self._spawn(i, join=True)

        async def three_voters() -> bool:
            return len((await self.get(0, "/v1/cluster"))["voters"]) == len(self.names)

        await wait_for(three_voters, timeout=90, what="3 voters")

    async def leader_name(self) -> str:
        async def named() -> str | None:
            leader = (await self.get(0, "/v1/cluster"))["leader"]
            return leader["name"] if leader else None

        return await wait_for(named, what="a leader")

    async def running_on(self, i: int) -> dict[str, int]:
        """Running tasks of the service by node name, as node `i` sees them."""
        counts: dict[str, int] = {}
        for task in await self.get(i, f"/v1/tasks?service={SERVICE}"):
            if task["state"] == "running" and task["desired"] == "running":
                counts[task["node_name"]] = counts.get(task["node_name"], 0) + 1
        return counts


async def timed_until(check, timeout: float, what: str) -> float:
    """wait_for, returning the monotonic time the check first held."""
    await wait_for(check, timeout=timeout, what=what)
    return time.monotonic()


async def one_run(replicas: int) -> dict[str, float]:
    hosts = await asyncio.to_thread(DockerHosts(3).__enter__)
    try:
        cluster = BedCluster(hosts)
        await cluster.start()
        leader = await cluster.leader_name()
        victim = next(i for i, name in enumerate(cluster.names) if name != leader)
        watcher = cluster.names.index(leader)
        async with cluster.client(watcher, timeout=30) as client:
            started = time.monotonic()
            await client.post(
                "/v1/services",
                {
                    "name": SERVICE,
                    "image": IMAGE,
                    "replicas": replicas,
                    "command": HTTPD,
                    "ports": ["80"],
                    "stop_grace_period": "1s",
                },
            )

        async def all_running() -> bool:
            return sum((await cluster.running_on(watcher)).values()) >= replicas

        running_at = await timed_until(all_running, 180, f"{replicas} running tasks")
        on_victim = (await cluster.running_on(watcher)).get(cluster.names[victim], 0)
        killed = time.monotonic()
        await asyncio.to_thread(hosts.pull_cable, victim)

        async def replaced() -> bool:
            counts = await cluster.running_on(watcher)
            return sum(n for name, n in counts.items() if name != cluster.names[victim]) >= replicas

        replaced_at = await timed_until(replaced, 180, f"{replicas} tasks off the dead node")
    finally:
        await asyncio.to_thread(hosts.__exit__, None, None, None)
    return {
        "create_to_running_s": running_at - started,
        "node_death_to_replaced_s": replaced_at - killed,
        "tasks_on_dead_node": on_victim,
    }


def main() -> None:
    run_orchestration(
        "python -m bench.orchestration",
        "Shoal, 3 hosts",
        "shoal",
        lambda replicas: asyncio.run(one_run(replicas)),
    )


if __name__ == "__main__":
    main()
