"""Docker Swarm mode beside Shoal's orchestration: 3 hosts, a private dockerd each.

    python -m bench.refs.swarm [--runs 3] [--replicas 30] [--quick]

Per run, on a fresh bed of 3 namespace hosts (bench.refs.hosts): h0 inits a swarm (one
manager, which also runs tasks, as Swarm does by default) and h1, h2 join as workers. Times
`docker service create --replicas N` of a busybox httpd, published in host mode (the routing
mesh needs IPVS, which this kernel lacks), until the service shows N/N running; then pulls the
network cable of a worker holding tasks and times until N tasks run on the other two. Medians
with min-max; ends with one `RESULT {json}` line.
"""

from __future__ import annotations

import time

import docker

from bench.refs.hosts import HTTPD, IMAGE, DockerHosts, run_orchestration, wait_until

SERVICE = "swarmbench"
VICTIM = 1  # a worker


def running_tasks(client: docker.DockerClient) -> list[dict]:
    tasks = client.api.tasks(filters={"service": SERVICE, "desired-state": "running"})
    return [t for t in tasks if t["Status"]["State"] == "running"]


def form_swarm(hosts: DockerHosts) -> list[docker.DockerClient]:
    manager_host = hosts.bed.hosts[0]
    clients = [docker.DockerClient(base_url=d.url, timeout=60) for d in hosts.daemons]
    clients[0].swarm.init(
        advertise_addr=manager_host.address, listen_addr=f"{manager_host.address}:2377"
    )
    token = clients[0].swarm.attrs["JoinTokens"]["Worker"]
    for client, host in zip(clients[1:], hosts.bed.hosts[1:], strict=False):
        client.swarm.join(
            remote_addrs=[f"{manager_host.address}:2377"],
            join_token=token,
            advertise_addr=host.address,
            listen_addr=f"{host.address}:2377",
        )
    wait_until(
        lambda: (
            sum(n.attrs["Status"]["State"] == "ready" for n in clients[0].nodes.list())
            == len(clients)
        ),
        60,
        "every swarm node ready",
    )
    return clients


def one_run(replicas: int) -> dict[str, float]:
    with DockerHosts(3) as hosts:
        clients = form_swarm(hosts)
        manager = clients[0]
        try:
            victim_id = clients[VICTIM].info()["Swarm"]["NodeID"]
            started = time.monotonic()
            # Through the CLI, exactly as an operator types it; -d returns once it is accepted.
            hosts.daemons[0].docker(
                "service",
                "create",
                "-d",
                "--name",
                SERVICE,
                "--replicas",
                str(replicas),
                "--no-resolve-image",
                "--publish",
                "mode=host,target=80",
                "--stop-grace-period",
                "1s",
                IMAGE,
                *HTTPD,
            )
            running_at = wait_until(
                lambda: len(running_tasks(manager)) >= replicas,
                180,
                f"{replicas} swarm tasks running",
            )
            on_victim = sum(t["NodeID"] == victim_id for t in running_tasks(manager))
            killed = time.monotonic()
            hosts.pull_cable(VICTIM)
            replaced_at = wait_until(
                lambda: sum(t["NodeID"] != victim_id for t in running_tasks(manager)) >= replicas,
                180,
                f"{replicas} swarm tasks running off the dead worker",
            )
        finally:
            for client in clients:
                client.close()
    return {
        "create_to_running_s": running_at - started,
        "node_death_to_replaced_s": replaced_at - killed,
        "tasks_on_dead_node": on_victim,
    }


def main() -> None:
    run_orchestration("python -m bench.refs.swarm", "Docker Swarm mode, 3 hosts", "swarm", one_run)


if __name__ == "__main__":
    main()
