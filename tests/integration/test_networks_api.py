"""Overlay networks through the CLI and the API on a real node (the process runtime: the
state and its answers need no overlay on the node): create, list, inspect with the VIPs of
the services on it, an encrypted one and its key rotation, remove, and errors that name
the field."""

from __future__ import annotations

import json

import pytest

from node.devcluster.localcluster import started_cluster
from tests.integration.test_services_api import SLEEPER, call, shoal

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def single(tmp_path):
    async with started_cluster(str(tmp_path), 1, ["--runtime", "process"]) as cluster:
        yield cluster


async def test_networks_through_the_cli_and_the_api(single):
    addr = f"https://{single.nodes[0].api}"
    made = shoal("network create", "appnet", "--label", "team=a", "-o", "json", addr=addr)
    assert made.returncode == 0, made.stderr
    network = json.loads(made.stdout)
    node_id = (await single.get(0, "/v1/nodes"))[0]["id"]
    assert (network["subnet"], network["vni"], network["leases"], network["labels"]) == (
        "10.200.0.0/20",
        4096,
        {node_id: "10.200.0.0/26"},
        {"team": "a"},
    )
    status, _ = await call(
        "POST", f"{addr}/v1/services", json={**SLEEPER, "name": "api", "networks": ["appnet"]}
    )
    assert status == 201
    inspected = json.loads(shoal("network inspect", "appnet", "-o", "json", addr=addr).stdout)
    assert (inspected["vips"], inspected["services"]) == ({"api": "10.200.8.1"}, ["api"])
    listed = shoal("network ls", addr=addr).stdout.splitlines()
    assert listed[1].split() == ["appnet", "10.200.0.0/20", "4096", "1", "1"]

    busy = shoal("network rm", "appnet", addr=addr)
    assert busy.returncode != 0 and "api" in busy.stderr
    for args, words in (
        (("Bad_",), ["name"]),
        (("other", "--subnet", "10.200.4.0/22"), ["subnet", "overlaps"]),
    ):
        refused = shoal("network create", *args, addr=addr)
        assert refused.returncode != 0 and all(w in refused.stderr for w in words), refused.stderr
    status, answer = await call(
        "POST", f"{addr}/v1/services", json={**SLEEPER, "name": "lost", "networks": ["nowhere"]}
    )
    assert (status, answer.get("field")) == (
        400,
        "networks[0]",
    ) and "no such network 'nowhere'" in answer["error"], answer
    assert (await call("GET", f"{addr}/v1/overlay"))[1] == {"enabled": False}

    sealed = json.loads(
        shoal("network create", "sealed", "--encrypted", "-o", "json", addr=addr).stdout
    )
    assert (sealed["encrypted"], sealed["key_epoch"], network["encrypted"]) == (True, 0, False)
    rotated = shoal("network rotate-key", "sealed", addr=addr)
    assert rotated.stdout.strip() == "sealed: key epoch 1", rotated.stderr
    again = shoal("network rotate-key", "sealed", addr=addr)
    assert again.returncode != 0 and "under way" in again.stderr, "one rotation at a time"
    plain = shoal("network rotate-key", "appnet", addr=addr)
    assert plain.returncode != 0 and "not encrypted" in plain.stderr, plain.stderr
    assert shoal("network rm", "sealed", addr=addr).returncode == 0

    assert (await call("DELETE", f"{addr}/v1/services/api"))[0] == 200
    assert shoal("network rm", "appnet", addr=addr).returncode == 0
    assert json.loads(shoal("network ls", "-o", "json", addr=addr).stdout) == []


def test_overlay_needs_the_docker_runtime(tmp_path):
    import subprocess
    import sys

    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "node",
            "node",
            "start",
            "--overlay",
            "--runtime",
            "process",
            "--data-dir",
            str(tmp_path / "n"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "--overlay needs the Docker runtime" in done.stderr
