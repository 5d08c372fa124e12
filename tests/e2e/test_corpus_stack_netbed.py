"""A stack of the public corpus runs on three hosts: swarmprom's docker-compose.yml, applied
unchanged with `shoal apply -f` on a Docker-runtime cluster with overlay networks.

Its eight services share network `net`: caddy proxies grafana, prometheus, alertmanager and
unsee by name; prometheus scrapes the tasks of the global dockerd-exporter, cadvisor and
node-exporter through `tasks.<service>`. No registry is reachable, so each host's Docker
Engine gets the stack's image names made locally from busybox: each answers HTTP with its
service's name on the ports its image serves (and caddy's carries a `curl` for its
healthcheck). The file's commands become arguments the stand-in ignores, as an entrypoint
would take them. From inside caddy every proxied service answers by its Compose name; from
inside prometheus every task of every global service answers at the addresses
`tasks.<service>` gives; every task runs in a container of its node's engine; caddy has the
corpus Caddyfile as its config; and its published port 3000 serves through every node.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import subprocess
import sys

import aiohttp
import pytest

from node.client import ShoalClient
from node.devcluster.localcluster import wait_for
from tests.e2e.test_overlay_netbed import _fetch
from tests.integration.cluster_support import live
from tests.safety.shoal_bed import API_PORT, REPO, BedCluster
from tests.unit.node.test_manifest_corpus import CORPUS

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

STACK_DIR = CORPUS / "compose/swarmprom"
HOSTS = 3

# The ports each image of the stack serves (caddy's image runs caddy and dockerd-exporter).
IMAGES = {
    "stefanprodan/caddy": (3000, 9090, 9093, 9094, 9323),
    "google/cadvisor": (8080,),
    "stefanprodan/swarmprom-grafana:5.3.4": (3000,),
    "stefanprodan/swarmprom-alertmanager:v0.14.0": (9093,),
    "cloudflare/unsee:v0.8.0": (8080,),
    "stefanprodan/swarmprom-node-exporter:v0.16.0": (9100,),
    "stefanprodan/swarmprom-prometheus:v2.5.0": (9090,),
}
# How many tasks each service runs on three nodes.
TASKS = {
    "dockerd-exporter": HOSTS,
    "cadvisor": HOSTS,
    "node-exporter": HOSTS,
    "grafana": 1,
    "alertmanager": 1,
    "unsee": 1,
    "prometheus": 1,
    "caddy": 1,
}
# What caddy proxies (its Caddyfile) and what prometheus scrapes (each task of these).
PROXIED = {"grafana": 3000, "prometheus": 9090, "alertmanager": 9093, "unsee": 8080}
SCRAPED = {"dockerd-exporter": 9323, "cadvisor": 8080, "node-exporter": 9100}

# Stands in for `curl -f URL`, the healthcheck the file gives caddy.
CURL = '#!/bin/sh\nfor arg; do url=$arg; done\nexec wget -q -O /dev/null "$url"\n'


def _entrypoint(ports: tuple[int, ...]) -> list[str]:
    """Serve the task's service name over HTTP on `ports`; any command given is ignored."""
    serve = " ".join(f"httpd -f -p {port} -h /tmp &" for port in ports)
    return ["sh", "-c", f'echo "$SHOAL_SERVICE" > /tmp/index.html && {serve} wait', "stand-in"]


def _make_images(daemon, busybox_image: str) -> None:
    daemon.load_from(busybox_image)
    for image, ports in IMAGES.items():
        setup = (
            f"printf '%s' '{CURL}' > /bin/curl && chmod +x /bin/curl"
            if image == "stefanprodan/caddy"
            else "true"
        )
        container = daemon.docker("run", "-d", busybox_image, "sh", "-c", setup).strip()
        daemon.docker("wait", container)
        daemon.docker(
            "commit",
            "--change",
            f"ENTRYPOINT {json.dumps(_entrypoint(ports))}",
            "--change",
            "CMD []",
            container,
            image,
        )
        daemon.docker("rm", container)


def _containers(daemon, service: str) -> list[str]:
    return daemon.docker("ps", "-q", "--filter", f"label=shoal.service={service}").split()


def _one(by_node, service: str) -> tuple[object, str]:
    """A host's engine running a container of `service`, and that container."""
    return next((d, ids[0]) for d in by_node.values() if (ids := _containers(d, service)))


def _exec(daemon, container: str, *argv: str) -> str:
    return daemon.host.run(
        ["docker", "-H", daemon.url, "exec", container, *argv], timeout=20
    ).stdout


def test_the_swarmprom_stack_runs_and_its_services_reach_each_other_by_name(
    netbed_factory, busybox_image, tmp_path
):
    bed = netbed_factory(HOSTS)
    with concurrent.futures.ThreadPoolExecutor(HOSTS) as pool:
        daemons = list(pool.map(lambda host: host.start_dockerd(), bed.hosts))
        list(pool.map(lambda daemon: _make_images(daemon, busybox_image), daemons))
    asyncio.run(_scenario(bed, {f"n{d.host.index}": d for d in daemons}, tmp_path))


async def _scenario(bed, by_node, tmp_path) -> None:
    env = {name: {"DOCKER_HOST": daemon.url} for name, daemon in by_node.items()}
    async with aiohttp.ClientSession() as session:
        cluster = BedCluster(
            bed,
            tmp_path / "nodes",
            session,
            runtime="docker",
            extra_args=["--overlay", "--image-pull", "never"],
            node_env=env,
        )
        try:
            await cluster.form()
            token = cluster.api_token
            addr = f"{cluster.hosts['n0'].address}:{API_PORT}"
            ca_file = str(cluster.data_dir("n0") / "tls" / "ca.pem")
            applied = await asyncio.to_thread(_apply, addr, token, ca_file)
            assert {s["name"] for s in applied["services"]} == set(TASKS), applied
            await _check_tasks_run(
                by_node, ShoalClient(addr, token, session=session, ssl_context=cluster.ssl_context)
            )
            await _check_caddy_proxies_by_name(by_node)
            await _check_prometheus_scrapes_every_task(by_node)
            await _check_published_port(bed, session)
        except BaseException:
            print(cluster.log_tails())
            raise


def _apply(addr: str, token: str, ca_file: str) -> dict:
    """`shoal apply -f FILE` as an operator elsewhere runs it."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "node",
            "apply",
            "--addr",
            addr,
            "-f",
            str(STACK_DIR / "docker-compose.yml"),
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        check=False,
        env=dict(os.environ, SHOAL_TOKEN=token, SHOAL_CA=ca_file),
    )
    assert done.returncode == 0, f"shoal apply failed ({done.returncode}): {done.stderr}"
    return json.loads(done.stdout)


async def _check_tasks_run(by_node, client: ShoalClient) -> None:
    async def all_running() -> bool:
        for service, count in TASKS.items():
            tasks = live(await client.request("GET", f"/v1/tasks?service={service}"))
            assert len(tasks) == count, f"{service}: {len(tasks)} of {count} tasks run"
            containers = sum([len(_containers(d, service)) for d in by_node.values()])
            assert containers == count, f"{service}: {containers} containers for {count} tasks"
        return True

    await wait_for(all_running, timeout=60, what="every task of the stack to run in a container")


async def _check_caddy_proxies_by_name(by_node) -> None:
    daemon, caddy = _one(by_node, "caddy")
    config = await asyncio.to_thread(_exec, daemon, caddy, "cat", "/etc/caddy/Caddyfile")
    assert config == (STACK_DIR / "caddy/Caddyfile").read_text()

    async def reaches_all() -> bool:
        for service, port in PROXIED.items():
            url = f"http://{service}:{port}/"
            body = await asyncio.to_thread(_fetch, daemon, caddy, url)
            assert body == service, f"caddy on {daemon.host.name}: {url} gave {body!r}"
        return True

    await wait_for(reaches_all, timeout=60, what="caddy to reach every service it proxies by name")


def _addresses(nslookup: str) -> set[str]:
    """The addresses busybox nslookup prints for the name (after the server's own lines)."""
    answer = nslookup.split("Name:", 1)[-1] if "Name:" in nslookup else ""
    return {line.split()[-1] for line in answer.splitlines() if line.startswith("Address")}


async def _check_prometheus_scrapes_every_task(by_node) -> None:
    daemon, prometheus = _one(by_node, "prometheus")

    async def every_task_answers() -> bool:
        for service, port in SCRAPED.items():
            done = await asyncio.to_thread(
                daemon.host.run,
                [
                    "docker",
                    "-H",
                    daemon.url,
                    "exec",
                    prometheus,
                    "timeout",
                    "5",
                    "nslookup",
                    f"tasks.{service}",
                ],
                check=False,
                timeout=20,
            )
            addresses = _addresses(done.stdout)
            assert len(addresses) == HOSTS, f"tasks.{service}: {done.stdout} {done.stderr}"
            for address in addresses:
                body = await asyncio.to_thread(
                    _fetch, daemon, prometheus, f"http://{address}:{port}/"
                )
                assert body == service, f"prometheus: task {address}:{port} gave {body!r}"
        return True

    await wait_for(
        every_task_answers,
        timeout=60,
        what="prometheus to reach every task of every global service through tasks.<name>",
    )


async def _check_published_port(bed, session: aiohttp.ClientSession) -> None:
    async def served_everywhere() -> bool:
        for host in bed.hosts:
            try:
                async with session.get(f"http://{host.address}:3000/") as resp:
                    answer = (resp.status, (await resp.text()).strip())
            except aiohttp.ClientError as exc:
                answer = (0, repr(exc))
            assert answer == (200, "caddy"), f"port 3000 on {host.name}: {answer}"
        return True

    await wait_for(served_everywhere, timeout=30, what="caddy's published port 3000 on every node")
