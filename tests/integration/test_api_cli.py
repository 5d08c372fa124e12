"""The HTTP API's answers to bad input, its auth rules, and the CLI's exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import aiohttp
import pytest

from node.devcluster.localcluster import (
    api_token_for,
    auth_for,
    ca_for,
    ssl_for,
    started_cluster,
    wait_for,
)

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def single(tmp_path):
    async with started_cluster(str(tmp_path), 1, ["--labels", "zone=a,tier=db"]) as cluster:
        yield cluster


def shoal(*args: str, addr: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "node", *args, "--addr", addr],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ, SHOAL_TOKEN=api_token_for(addr), SHOAL_CA=ca_for(addr)),
    )


async def _raw(method: str, url: str, **kwargs) -> tuple[int, dict]:
    """A request with the node's API token, unless the caller gives its own headers."""
    kwargs.setdefault("headers", auth_for(url))
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, url, ssl=ssl_for(url), **kwargs) as resp,
    ):
        return resp.status, await resp.json(content_type=None)


async def test_malformed_requests_get_400_naming_the_field(single):
    base = f"https://{single.nodes[0].api}/v1/nodes/n1"
    cases = [
        (
            {
                "data": b"{not json",
                "headers": {"Content-Type": "application/json", **auth_for(base)},
            },
            "body",
        ),
        ({"json": {"availability": "sideways"}}, "availability"),
        ({"json": {"add_labels": {"k": 5}}}, "add_labels.k"),
        ({"json": {"add_labels": {"bad key!": "v"}}}, "add_labels.bad key!"),
        ({"json": {"colour": "red"}}, "colour"),
        ({"json": ["a", "list"]}, "body"),
    ]
    for kwargs, field in cases:
        status, body = await _raw("PATCH", base, **kwargs)
        assert status == 400, (kwargs, body)
        assert body["error"]
        assert body.get("field") == field, (kwargs, body)
    status, body = await _raw("GET", f"https://{single.nodes[0].api}/v1/nodes/nope")
    assert status == 404 and "no such node" in body["error"]
    # Nothing was lost or changed by the bad requests.
    node = await single.get(0, "/v1/nodes/n1")
    assert node["labels"] == {"zone": "a", "tier": "db"}


async def test_internal_calls_need_the_token_and_a_nodes_key(single):
    api = single.nodes[0].api
    msgpack_type = {"Content-Type": "application/msgpack"}
    status, body = await _raw(
        "POST", f"https://{api}/v1/internal/propose", data=b"\x93garbage", headers=msgpack_type
    )
    assert status == 401 and "token" in body["error"]
    # The API token alone does not make a node: raw commands would skip the API's checks.
    token = (await single.get(0, "/v1/cluster/token"))["api_token"]
    headers = {"Authorization": f"Bearer {token}", **msgpack_type}
    for path in ("/v1/internal/propose", "/v1/internal/removed", "/v1/internal/raft-role"):
        status, body = await _raw(
            "POST", f"https://{api}{path}", data=b"\x93garbage", headers=headers
        )
        assert status == 403 and body["field"] == "X-Shoal-Node", (path, body)
    forged = {**single.nodes[0].node_headers, "X-Shoal-Node-Key": "0" * 64, **msgpack_type}
    status, _ = await _raw("POST", f"https://{api}/v1/internal/removed", headers=forged)
    assert status == 403
    assert (await single.get(0, "/healthz"))["ok"]  # still running
    status, body = await _raw(
        "POST",
        f"https://{api}/v1/internal/propose",
        data=b"\x93garbage",
        headers={**single.nodes[0].node_headers, **msgpack_type},
    )
    assert status == 400 and "msgpack" in body["error"]


async def test_cli_lists_updates_and_fails_cleanly(single):
    addr = f"https://{single.nodes[0].api}"
    listed = shoal("node", "ls", "-o", "json", addr=addr)
    assert listed.returncode == 0, listed.stderr
    (node,) = json.loads(listed.stdout)
    assert node["name"] == "n1" and node["role"] == "voter" and node["leader"]

    table = shoal("node", "ls", addr=addr)
    header, row = table.stdout.splitlines()[:2]
    assert header.split()[:4] == ["ID", "NAME", "ADDRESS", "ROLE"]
    assert node["id"] in row and "voter" in row

    updated = shoal(
        "node",
        "update",
        "n1",
        "--label-add",
        "disk=ssd",
        "--label-rm",
        "tier",
        "--availability",
        "drain",
        "-o",
        "json",
        addr=addr,
    )
    assert updated.returncode == 0, updated.stderr
    assert json.loads(updated.stdout)["labels"] == {"zone": "a", "disk": "ssd"}
    assert json.loads(updated.stdout)["availability"] == "drain"

    token = shoal("cluster", "token", addr=addr)
    assert token.returncode == 0 and token.stdout.startswith("SHOAL2-")
    status = shoal("cluster", "status", "-o", "json", addr=addr)
    assert json.loads(status.stdout)["leader"]["name"] == "n1"

    bad_flag = shoal("node", "update", "n1", "--label-add", "novalue", addr=addr)
    assert bad_flag.returncode == 2 and "KEY=VALUE" in bad_flag.stderr
    bad_value = shoal("node", "update", "n1", "--label-add", "bad key!=x", addr=addr)
    assert bad_value.returncode == 2 and "add_labels" in bad_value.stderr
    missing = shoal("node", "inspect", "ghost", addr=addr)
    assert missing.returncode == 1 and "no such node" in missing.stderr
    unreachable = shoal("node", "ls", addr="http://127.0.0.1:9")
    assert unreachable.returncode == 2
    assert unreachable.stderr.count("\n") == 1 and "cannot reach" in unreachable.stderr


async def test_garbage_on_the_api_port_does_not_hurt_the_node(single):
    import asyncio

    host, port = single.nodes[0].api.split(":")
    for junk in (
        b"\x00\xff" * 500,
        b"GET / HTTP/9.9\r\n\r\n",
        b"PATCH /v1/nodes/n1 HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n{",
    ):
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(junk)
        await writer.drain()
        writer.close()
    assert await wait_for(lambda: single.get(0, "/healthz"), what="the node to stay healthy")
