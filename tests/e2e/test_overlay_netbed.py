"""Overlay networks across hosts: three Shoal nodes, each in its own network namespace with
its own Docker Engine (so each engine would give its containers the same 172.17.0.0/16), and
a fourth host outside the cluster.

A Compose stack puts `backend` (publishing no port, on one host only) and `frontend` (on
every host) on network `appnet`, and `intruder` on network `othernet`. A frontend on every
host fetches http://backend/ by name, by `backend.appnet`, by `tasks.backend` and by the VIP;
the intruder on the other network reaches the backend neither by name nor by address (nor does a
frontend reach `other`, on that other network); `worker`, on both networks, reaches the
services of both by name and VIP, whichever network its resolver and default route are on;
the host outside the cluster, given a route through a node, reaches neither the task nor the VIP.
A name outside the cluster resolves through the nodes' upstream resolver (a resolver on the
outside host stands in for it). Removing a network leaves nothing of it on any host. A node
restarted adopts what it left (its containers, networks and devices) and serves again. When a
host dies, its task leaves the VIP of `api` (two replicas) on the others within the gossip
bound, requests to the VIP succeed again, and no forwarding entry towards it is left; the
host then comes back and is removed from the cluster: it takes its networks, devices, routes
and rules down, and its lease returns. `api` publishes `ports: ["80"]`: a mesh port from 30000 on every node, as Swarm does, reaching its
tasks over the network (they bind no host port), through nftables on n0 and the proxy on the
others. Two Kubernetes ClusterIP Services on port 80, each in front of its own Deployment
listening on 8080 (one Service applied in its own file first), both answer by name from a pod
on the network, as does a third applied after its Deployment.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ipaddress
import json
import sys
import time

import aiohttp
import pytest

from node.client import ShoalClient
from node.devcluster.localcluster import wait_for
from tests.netbed import Faults
from tests.safety.shoal_bed import API_PORT, BedCluster

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

STACK = """
networks:
  appnet: {}
  othernet: {}
services:
  backend:
    image: {image}
    command: ["sh", "-c", "echo backend-on-$SHOAL_NODE_ID > /tmp/index.html && exec httpd -f -p 80 -h /tmp"]
    networks: [appnet]
    deploy:
      placement: {constraints: ["node.hostname==n1"]}
  frontend:
    image: {image}
    command: ["sleep", "3600"]
    networks: [appnet]
    deploy: {mode: global}
  api:
    image: {image}
    command: ["sh", "-c", "echo api-on-$SHOAL_NODE_ID > /tmp/index.html && exec httpd -f -p 80 -h /tmp"]
    networks: [appnet]
    ports: ["80"]
    deploy:
      replicas: 2
      placement: {constraints: ["node.hostname!=n0"]}
  intruder:
    image: {image}
    command: ["sleep", "3600"]
    networks: [othernet]
    deploy:
      placement: {constraints: ["node.hostname==n0"]}
  other:
    image: {image}
    command: ["sh", "-c", "echo other-on-$SHOAL_NODE_ID > /tmp/index.html && exec httpd -f -p 80 -h /tmp"]
    networks: [othernet]
    deploy:
      placement: {constraints: ["node.hostname==n1"]}
  worker:
    image: {image}
    command: ["sleep", "3600"]
    networks: [othernet, appnet]
    deploy:
      placement: {constraints: ["node.hostname==n0"]}
"""

# Two Services on port 80 in front of two Deployments on 8080, and a pod to call them from.
KUBE_SERVICE = """
apiVersion: v1
kind: Service
metadata: {name: NAME}
spec:
  selector: {app: NAME-app}
  ports: [{port: 80, targetPort: 8080}]
"""
KUBE_DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: NAME-app}
spec:
  selector: {matchLabels: {app: NAME-app}}
  template:
    metadata: {labels: {app: NAME-app}}
    spec:
      containers:
      - name: web
        image: {image}
        command: ["sh", "-c", "echo NAME-answers > /tmp/index.html && exec httpd -f -p 8080 -h /tmp"]
"""
KUBE_CLIENT = """
apiVersion: v1
kind: Pod
metadata: {name: kclient}
spec:
  containers: [{name: client, image: {image}, command: ["sleep", "3600"]}]
"""

# The nodes' upstream resolver: it knows one name outside the cluster.
UPSTREAM = """
import socket
from dnslib import QTYPE, RR, A, DNSRecord
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind(("0.0.0.0", 53))
while True:
    data, peer = sock.recvfrom(4096)
    query = DNSRecord.parse(data)
    reply = query.reply()
    if str(query.q.qname) == "outside.example.":
        reply.add_answer(RR(query.q.qname, QTYPE.A, rdata=A("192.0.2.7"), ttl=60))
    else:
        reply.header.rcode = 3
    sock.sendto(reply.pack(), peer)
"""


def _container(daemon, service: str) -> str:
    ids = daemon.docker("ps", "-q", "--filter", f"label=shoal.service={service}").split()
    assert len(ids) == 1, f"{service} on {daemon.host.name}: {ids}"
    return ids[0]


def _fetch(daemon, container: str, url: str, timeout: int = 3) -> str:
    """What `wget URL` prints inside the container ('' when it fails)."""
    done = daemon.host.run(
        [
            "docker",
            "-H",
            daemon.url,
            "exec",
            container,
            "timeout",
            str(timeout),
            "wget",
            "-q",
            "-O-",
            url,
        ],
        check=False,
        timeout=timeout + 10,
    )
    return done.stdout.strip() if done.returncode == 0 else ""


async def _overlay_ready(client: ShoalClient, networks: set[str]) -> dict:
    status = await client.request("GET", "/v1/overlay")
    names = {n["name"] for n in status["networks"]}
    assert status["enabled"] and names >= networks and not status["problems"], status
    return status


def test_two_services_talk_by_name_across_hosts_and_networks_stay_apart(
    netbed_factory, busybox_image, tmp_path
):
    bed = netbed_factory(4)
    members, outside = bed.hosts[:3], bed.hosts[3]
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        daemons = list(pool.map(lambda host: host.start_dockerd(), members))
        list(pool.map(lambda daemon: daemon.load_from(busybox_image), daemons))
    by_node = {f"n{d.host.index}": d for d in daemons}
    outside.spawn([sys.executable, "-c", UPSTREAM])
    asyncio.run(_scenario(bed, by_node, outside, busybox_image, tmp_path))


async def _scenario(bed, by_node, outside, image, tmp_path) -> None:
    env = {name: {"DOCKER_HOST": daemon.url} for name, daemon in by_node.items()}
    async with aiohttp.ClientSession() as session:
        cluster = BedCluster(
            bed,
            tmp_path / "nodes",
            session,
            hosts=3,
            runtime="docker",
            extra_args=["--overlay", "--image-pull", "never", "--dns-upstream", outside.address],
            node_env=env,
            # Both routing mesh data planes reach tasks over the network.
            node_args={"n0": ["--lb-dataplane", "nft"]},
        )
        try:
            await cluster.form()
            token, verified = cluster.api_token, cluster.ssl_context
            clients = {
                name: ShoalClient(
                    f"{host.address}:{API_PORT}", token, session=session, ssl_context=verified
                )
                for name, host in cluster.hosts.items()
            }
            applied = await clients["n0"].request(
                "POST",
                "/v1/apply",
                data=STACK.replace("{image}", image).encode(),
                content_type="application/yaml",
            )
            assert {row["name"] for row in applied["networks"]} == {"appnet", "othernet"}
            await _check(by_node, outside, clients)
            await _check_kubernetes_services(by_node, clients, image)
            await _check_forwarding(by_node)
            await _check_removal(by_node, clients)
            await _check_restart(cluster, by_node, clients)
            await _check_host_death(bed, by_node, clients)
            await _check_node_removal(bed, cluster, by_node, clients)
        except BaseException:
            print(cluster.log_tails())
            raise


async def _check(by_node, outside, clients) -> None:
    for client in clients.values():
        await wait_for(
            lambda c=client: _overlay_ready(c, {"appnet", "othernet"}),
            timeout=30,
            what="every node's overlay to hold both networks",
        )
    network = await clients["n0"].request("GET", "/v1/networks/appnet")
    vip = network["vips"]["backend"]
    backend_node = by_node["n1"]

    async def frontends_served() -> bool:
        for name, daemon in by_node.items():
            frontend = _container(daemon, "frontend")
            assert (
                await asyncio.to_thread(_fetch, daemon, frontend, "http://backend/")
            ).startswith("backend-on-"), f"frontend on {name} does not reach http://backend/ yet"
        return True

    await wait_for(
        frontends_served, timeout=60, what="every host's frontend to reach http://backend/"
    )
    backend_address = json.loads(
        backend_node.docker(
            "inspect",
            "-f",
            "{{json .NetworkSettings.Networks}}",
            _container(backend_node, "backend"),
        )
    )["shoal-appnet"]["IPAddress"]
    n1_id = next(
        n["id"] for n in await clients["n0"].request("GET", "/v1/nodes") if n["name"] == "n1"
    )
    assert ipaddress.ip_address(backend_address) in ipaddress.ip_network(
        network["leases"][n1_id]
    ), "the backend's address is in its node's lease"
    for name, daemon in by_node.items():
        frontend = _container(daemon, "frontend")
        for url in (
            "http://backend/",
            "http://backend.appnet/",
            "http://tasks.backend/",
            f"http://{vip}/",
            f"http://{backend_address}/",
        ):
            body = await asyncio.to_thread(_fetch, daemon, frontend, url)
            assert body.startswith("backend-on-"), f"frontend on {name}: {url} gave {body!r}"
    # Another network reaches the backend neither by name nor by its addresses.
    intruder_host = by_node["n0"]
    intruder = _container(intruder_host, "intruder")
    for url in (
        "http://backend/",
        "http://backend.appnet/",
        f"http://{vip}/",
        f"http://{backend_address}/",
    ):
        assert await asyncio.to_thread(_fetch, intruder_host, intruder, url, 2) == "", (
            f"the intruder on othernet reached {url}"
        )
    await _check_two_networks(by_node, clients, vip)
    # A published port: every node's routing mesh reaches api over the network; no host port.
    api = (await clients["n0"].request("GET", "/v1/services/api"))["spec"]["ports"][0]
    assert (api["target"], api["published"]) == (80, 30000)
    for name, daemon in by_node.items():
        if name != "n0":
            assert daemon.docker("port", _container(daemon, "api")).strip() == "", "no host port"
        done = outside.run(
            [
                "timeout",
                "3",
                "busybox",
                "wget",
                "-q",
                "-O-",
                f"http://{daemon.host.address}:30000/",
            ],
            check=False,
            timeout=10,
        )
        assert done.stdout.startswith("api-on-"), (
            f"the mesh on {name}: {done.stdout!r} {done.stderr!r}"
        )
    # Outside the cluster: a host routed through the backend's node reaches nothing.
    network_range = network["subnet"]
    outside.run(["ip", "route", "add", network_range, "via", backend_node.host.address])
    for url in (f"http://{backend_address}/", f"http://{vip}/"):
        done = outside.run(
            ["timeout", "2", "busybox", "wget", "-q", "-O-", url], check=False, timeout=10
        )
        assert done.returncode != 0, f"the host outside the cluster reached {url}: {done.stdout!r}"


async def _check_two_networks(by_node, clients, backend_vip) -> None:
    """`worker` (othernet first, then appnet) reaches both networks' services by name and VIP;
    a frontend (appnet only) reaches nothing of othernet."""
    other = await clients["n0"].request("GET", "/v1/networks/othernet")
    other_vip = other["vips"]["other"]
    daemon = by_node["n0"]
    worker, frontend = _container(daemon, "worker"), _container(daemon, "frontend")
    urls = {
        "backend-on-": (
            "http://backend/",
            "http://backend.appnet/",
            "http://tasks.backend/",
            f"http://{backend_vip}/",
        ),
        "other-on-": ("http://other/", "http://other.othernet/", f"http://{other_vip}/"),
    }

    async def both_served() -> bool:
        for answer, addresses in urls.items():
            for url in addresses:
                body = await asyncio.to_thread(_fetch, daemon, worker, url)
                assert body.startswith(answer), (
                    f"worker on othernet and appnet: {url} gave {body!r}"
                )
        return True

    await wait_for(both_served, timeout=30, what="the worker on two networks to reach both")
    for url in urls["other-on-"]:
        assert await asyncio.to_thread(_fetch, daemon, frontend, url, 2) == "", (
            f"a frontend on appnet reached {url} of othernet"
        )


async def _check_kubernetes_services(by_node, clients, image) -> None:
    async def apply(*docs: str) -> dict:
        text = "---".join(docs).replace("{image}", image)
        return await clients["n0"].request(
            "POST", "/v1/apply", data=text.encode(), content_type="application/yaml"
        )

    first = await apply(KUBE_SERVICE.replace("NAME", "ktwo"))  # before its Deployment
    assert first["selectors"], first
    await apply(
        KUBE_DEPLOYMENT.replace("NAME", "kone"),
        KUBE_SERVICE.replace("NAME", "kone"),
        KUBE_DEPLOYMENT.replace("NAME", "ktwo"),
        KUBE_CLIENT,
    )

    async def both_answer() -> bool:
        hosts = [
            d
            for d in by_node.values()
            if d.docker("ps", "-q", "--filter", "label=shoal.service=kclient")
        ]
        assert hosts, "kclient is not running yet"
        for name in ("kone", "ktwo"):
            body = await asyncio.to_thread(
                _fetch, hosts[0], _container(hosts[0], "kclient"), f"http://{name}/"
            )
            assert body == f"{name}-answers", f"http://{name}/ gave {body!r}"
        return True

    await wait_for(
        both_answer, timeout=60, what="both Kubernetes Services to answer by name on port 80"
    )
    # A Service applied after its Deployment, on another port of the same VIP.
    await apply(
        KUBE_SERVICE.replace("NAME-app", "kone-app")
        .replace("NAME", "kthree")
        .replace("port: 80", "port: 81")
    )

    async def third_answers() -> bool:
        host = next(
            d
            for d in by_node.values()
            if d.docker("ps", "-q", "--filter", "label=shoal.service=kclient")
        )
        body = await asyncio.to_thread(
            _fetch, host, _container(host, "kclient"), "http://kthree:81/"
        )
        assert body == "kone-answers", f"http://kthree:81/ gave {body!r}"
        return True

    await wait_for(
        third_answers, timeout=60, what="a Service applied after its Deployment to answer"
    )
    vips = (await clients["n0"].request("GET", "/v1/networks/default"))["vips"]
    assert vips["kone-app"] != vips["ktwo-app"], vips


async def _check_forwarding(by_node) -> None:
    daemon = by_node["n2"]
    done = await asyncio.to_thread(
        daemon.host.run,
        [
            "docker",
            "-H",
            daemon.url,
            "exec",
            _container(daemon, "frontend"),
            "timeout",
            "5",
            "nslookup",
            "outside.example",
        ],
        check=False,
        timeout=20,
    )
    assert "192.0.2.7" in done.stdout, f"a name outside the cluster: {done.stdout} {done.stderr}"


def _leftovers(daemon) -> list[str]:
    """What of network othernet (VXLAN id 4097) this host still has."""
    links = daemon.host.run(["ip", "-o", "link", "show"]).stdout
    found = [
        name for name in ("sov4097", "svx4097") if f" {name}:" in links or f" {name}@" in links
    ]
    if "shoal-othernet" in daemon.docker("network", "ls", "--format", "{{.Name}}").split():
        found.append("docker network shoal-othernet")
    return found


async def _check_removal(by_node, clients) -> None:
    assert all(_leftovers(d) for d in by_node.values()), "every host has the network before"
    for service in ("intruder", "other", "worker"):
        await clients["n0"].request("DELETE", f"/v1/services/{service}")
    await clients["n0"].request("DELETE", "/v1/networks/othernet")

    async def gone() -> bool:
        left = {name: _leftovers(d) for name, d in by_node.items()}
        assert not any(left.values()), left
        return True

    await wait_for(gone, timeout=30, what="network othernet to leave every host")


async def _api_tasks(client: ShoalClient) -> list[str]:
    status = await client.request("GET", "/v1/overlay")
    (appnet,) = [n for n in status["networks"] if n["name"] == "appnet"]
    return appnet["services"]["api"]["tasks"]


async def _check_host_death(bed, by_node, clients) -> None:
    async def both_serving() -> bool:
        assert len(await _api_tasks(clients["n0"])) == 2
        return True

    await wait_for(both_serving, timeout=30, what="both api tasks behind the VIP")
    daemon = by_node["n0"]
    frontend = _container(daemon, "frontend")
    dead = by_node["n2"].host
    Faults(bed).link_down(dead)
    cut = time.monotonic()

    async def out_of_the_vip() -> bool:
        assert len(await _api_tasks(clients["n0"])) == 1
        return True

    await wait_for(out_of_the_vip, timeout=15, what="the dead host's task to leave the VIP")
    left_vip = time.monotonic() - cut
    bodies = [await asyncio.to_thread(_fetch, daemon, frontend, "http://api/", 2) for _ in range(5)]
    served = time.monotonic() - cut
    assert all(b.startswith("api-on-") for b in bodies), bodies
    print(
        f"host death: out of the VIP after {left_vip:.2f} s; 5 of 5 requests served by {served:.2f} s"
    )
    assert left_vip <= 5.0, f"the dead host's task stayed in the VIP {left_vip:.2f} s"

    # A suspect host still gets floods (a false suspicion must not cut it off); once gossip
    # declares it dead, every other host stops tunnelling to it.
    async def no_flood_to_the_dead() -> bool:
        for name in ("n0", "n1"):
            fdb = by_node[name].host.run(["bridge", "fdb", "show", "dev", "svx4096"]).stdout
            assert f"dst {dead.address} " not in fdb, (
                f"{name} still floods to the dead host:\n{fdb}"
            )
        return True

    await wait_for(no_flood_to_the_dead, timeout=30, what="floods to the dead host to stop")
    print(f"host death: no flood to it after {time.monotonic() - cut:.2f} s")


def _shoal_leftovers(daemon) -> list[str]:
    """Whatever of Shoal's overlay this host still has: devices, nft tables, engine networks."""
    links = daemon.host.run(["ip", "-o", "link", "show"]).stdout
    found = [
        line.split(":")[1].strip()
        for line in links.splitlines()
        if any(f" {prefix}" in line.split(":")[1] for prefix in ("sov", "svx", "shoal-vips"))
    ]
    found += [
        line
        for line in daemon.host.run(["nft", "list", "tables"]).stdout.splitlines()
        if "shoal_overlay" in line
    ]
    found += [
        name
        for name in daemon.docker("network", "ls", "--format", "{{.Name}}").split()
        if name.startswith("shoal-")
    ]
    return found


async def _check_node_removal(bed, cluster, by_node, clients) -> None:
    """The dead host comes back and is removed from the cluster: it takes its whole overlay
    down (its lease may go to another node), and its lease returns to the network."""
    host = by_node["n2"]
    Faults(bed).link_up(host.host)

    async def ready() -> str:
        (node,) = [n for n in await clients["n0"].request("GET", "/v1/nodes") if n["name"] == "n2"]
        assert node["status"] == "ready", node["status"]
        return node["id"]

    node_id = await wait_for(ready, timeout=30, what="n2 to be back")
    assert _shoal_leftovers(host), "n2 has its overlay before it is removed"
    await clients["n0"].request("DELETE", f"/v1/nodes/{node_id}", params={"force": "1"})

    async def torn_down() -> bool:
        left = _shoal_leftovers(host)
        assert not left, f"n2 still has {left}"
        return True

    await wait_for(torn_down, timeout=30, what="the removed node to take its overlay down")
    assert node_id not in (await clients["n0"].request("GET", "/v1/networks/appnet"))["leases"]

    async def stopped() -> bool:
        return not cluster.processes["n2"].alive

    await wait_for(stopped, timeout=15, what="n2 to stop")


async def _check_restart(cluster, by_node, clients) -> None:
    daemon = by_node["n0"]

    def engine_networks() -> list[str]:
        return daemon.docker(
            "network", "ls", "--filter", "name=shoal-", "--format", "{{.ID}} {{.Name}}"
        ).split()

    before = engine_networks()
    await cluster.restart("n0", graceful=True)
    await wait_for(
        lambda: _overlay_ready(clients["n0"], {"appnet"}),
        timeout=30,
        what="n0's overlay after its restart",
    )
    assert engine_networks() == before, "the restarted node kept its network, not a new one"

    async def serves() -> bool:
        body = await asyncio.to_thread(
            _fetch, daemon, _container(daemon, "frontend"), "http://backend/"
        )
        assert body.startswith("backend-on-"), body
        return True

    await wait_for(
        serves, timeout=30, what="n0's frontend to reach http://backend/ after the restart"
    )
