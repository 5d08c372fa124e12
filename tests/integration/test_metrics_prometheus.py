"""A real Prometheus server (Debian's `prometheus`) scrapes `GET /metrics` on every node of a
3-node cluster, sending the API token as its scrape config says, and queries return the
series: Raft, tasks by state, the routing mesh's connections, API requests by route."""

from __future__ import annotations

import functools
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from node.devcluster.localcluster import started_cluster, wait_for
from tests.support import processes_working_under, unavailable

pytestmark = pytest.mark.timeout(180)
PUBLISHED = 18080
SCRAPE_CONFIG = """\
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: shoal
    scheme: https
    tls_config:
      ca_file: {ca_file}
    authorization:
      credentials: {token}
    static_configs:
      - targets: [{targets}]
"""


def require_prometheus() -> str:
    binary = shutil.which("prometheus")
    if binary is None:
        unavailable("prometheus is not installed (Debian package `prometheus`)")
    return binary


async def _query(session: aiohttp.ClientSession, server: str, promql: str) -> list[dict]:
    async with session.get(f"http://{server}/api/v1/query", params={"query": promql}) as resp:
        answer = await resp.json()
    assert answer["status"] == "success", answer
    return answer["data"]["result"]


async def test_prometheus_scrapes_every_node_and_queries_return_the_series(tmp_path: Path):
    binary = require_prometheus()
    async with started_cluster(str(tmp_path), 3, ["--runtime", "process"]) as cluster:
        token = (await cluster.get(0, "/v1/cluster/token"))["api_token"]
        async with cluster.nodes[0].client() as client:
            await client.post(
                "/v1/services",
                {
                    "name": "web",
                    "image": "process",
                    "replicas": 2,
                    "command": ["sh", "-c", f"exec {sys.executable} -m http.server $PORT"],
                    "ports": [f"{PUBLISHED}:8000"],
                    "health": {"kind": "http", "path": "/", "interval": "0.5s", "timeout": "1s"},
                },
            )
        targets = ", ".join(f"'{n.api}'" for n in cluster.nodes)
        config = tmp_path / "prometheus.yml"
        config.write_text(
            SCRAPE_CONFIG.format(token=token, targets=targets, ca_file=cluster.nodes[0].ca_file)
        )
        server = f"127.0.{cluster.block}.100:9090"
        with open(tmp_path / "prometheus.log", "wb") as log:  # the child keeps its own copy
            prometheus = subprocess.Popen(
                [
                    binary,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                    f"--web.listen-address={server}",
                ],
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:

                async def through_the_mesh() -> bool:
                    async with session.get(f"http://{cluster.nodes[2].address}:{PUBLISHED}/") as r:
                        return r.status == 200

                await wait_for(
                    lambda: _swallow(through_the_mesh()),
                    timeout=60,
                    what="the service through the routing mesh",
                )

                async def value(promql: str) -> float | None:
                    result = await _query(session, server, promql)
                    return float(result[0]["value"][1]) if result else None

                async def scraped(promql: str, check) -> bool:
                    got = await _swallow(value(promql))
                    return got is not None and check(got)

                expectations = {
                    'sum(up{job="shoal"})': lambda v: v == 3,
                    "sum(shoal_raft_leader)": lambda v: v == 1,
                    "min(shoal_raft_commit_index)": lambda v: v > 0,
                    'sum(shoal_tasks{service="web",state="running"}) / count(shoal_raft_term)': lambda v: (
                        v == 2
                    ),
                    'sum(shoal_lb_connections_total{service="web",port="18080"})': lambda v: v >= 1,
                    'sum(shoal_api_requests_total{route="/v1/services",method="POST",'
                    'status="201"})': lambda v: v == 1,
                    'sum(shoal_gossip_members{state="alive"})': lambda v: v == 9,
                    "count(shoal_raft_commit_seconds_bucket)": lambda v: v > 0,
                }
                for promql, check in expectations.items():
                    await wait_for(
                        functools.partial(scraped, promql, check), timeout=30, what=promql
                    )
        finally:
            prometheus.send_signal(signal.SIGTERM)
            try:
                prometheus.wait(15)
            except subprocess.TimeoutExpired:
                prometheus.kill()
                prometheus.wait()
            for pid in processes_working_under(tmp_path):
                os.kill(pid, signal.SIGKILL)


async def _swallow(check):
    """A check that fails while the cluster or Prometheus is still coming up: not yet."""
    try:
        return await check
    except (TimeoutError, aiohttp.ClientError, OSError):
        return None
