"""The API tried as an attacker would: another local user, a web page in a browser on the
node's machine, hostile headers and bodies, connections that never finish."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys
import tempfile
import time

import aiohttp
import pytest

from node.local_socket import socket_path
from node.localcluster import auth_for, started_cluster
from tests.support import as_nobody

pytestmark = pytest.mark.timeout(120)

SERVICE = {"name": "web", "image": "process", "command": ["sleep", "300"], "replicas": 0}


@pytest.fixture
async def single():
    # Under a directory any user may pass through (0711), as a data dir under /var/lib is:
    # the node's own modes are all that keep another user out.
    with tempfile.TemporaryDirectory() as base:
        os.chmod(base, 0o711)
        async with started_cluster(base, 1) as cluster:
            yield cluster


def cli(*argv: str, env: dict[str, str] | None = None,
        user: str = "self") -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "node", *argv]
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SHOAL_")}
    return subprocess.run(as_nobody(command) if user == "nobody" else command,
                          env={**clean, **(env or {})}, capture_output=True, text=True,
                          timeout=60)


async def raw(method: str, url: str, **kwargs) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as session:
        async with session.request(method, url, **kwargs) as resp:
            return resp.status, await resp.json(content_type=None)


async def raw_exchange(host: str, port: int, request: bytes) -> bytes:
    """Bytes on a socket, for headers no HTTP client library would send."""
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(request)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(65536), 10)
    writer.close()
    return answer


async def test_tcp_needs_the_token_even_from_loopback(single):
    node = single.nodes[0]
    url = f"http://{node.api}/v1/cluster/token"
    status, body = await raw("GET", url)
    assert status == 401 and "token" in body["error"]
    status, _ = await raw("GET", url, headers={"Authorization": "Bearer " + "0" * 64})
    assert status == 401
    host, port = node.api.split(":")
    for bearer in ("é".encode(), b"\xff\xfe", "токен".encode()):
        answer = await raw_exchange(host, int(port), b"GET /v1/cluster/token HTTP/1.1\r\nHost: "
                                    + host.encode() + b"\r\nAuthorization: Bearer " + bearer
                                    + b"\r\nConnection: close\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
    status, body = await raw("GET", url, headers=auth_for(node.api))
    assert status == 200 and body["token"].startswith("SHOAL1-")
    # The health probe stays open and tells nothing secret.
    status, body = await raw("GET", f"http://{node.api}/healthz")
    assert status == 200 and "token" not in json.dumps(body)


async def test_another_local_user_gets_nothing(single):
    node = single.nodes[0]
    sock = socket_path(node.data_dir)
    assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600
    as_socket = cli("cluster", "token", "--addr", f"unix:{sock}", user="nobody")
    assert as_socket.returncode == 2 and "Permission denied" in as_socket.stderr
    via_dir = cli("cluster", "token", env={"SHOAL_DATA_DIR": node.data_dir}, user="nobody")
    assert via_dir.returncode == 2 and "SHOAL1-" not in via_dir.stdout
    over_tcp = cli("service", "create", "--name", "evil", "--addr", node.api, "process",
                   "id", user="nobody")
    assert over_tcp.returncode == 1 and "token" in over_tcp.stderr
    assert (await single.get(0, "/v1/services")) == []


async def test_the_nodes_own_user_administers_it_through_its_socket(single):
    node = single.nodes[0]
    by_flag = cli("cluster", "token", "--data-dir", node.data_dir)
    assert by_flag.returncode == 0 and by_flag.stdout.startswith("SHOAL1-"), by_flag.stderr
    by_env = cli("node", "ls", "-o", "json", env={"SHOAL_DATA_DIR": node.data_dir})
    assert by_env.returncode == 0 and json.loads(by_env.stdout)[0]["name"] == "n1"
    by_addr = cli("service", "create", "--name", "web", "--replicas", "0",
                  "--addr", f"unix:{socket_path(node.data_dir)}", "process", "sleep", "1")
    assert by_addr.returncode == 0, by_addr.stderr
    # Over TCP a wrong token is refused like none.
    wrong = cli("node", "ls", "--addr", node.api, env={"SHOAL_TOKEN": "f" * 64})
    assert wrong.returncode == 1 and "token" in wrong.stderr


@pytest.mark.parametrize("headers, status, field", [
    ({"Host": "evil.example:7420"}, 421, "Host"),  # DNS rebinding: the attacker's name
    ({"Origin": "http://evil.example"}, 403, "Origin"),
    ({"Sec-Fetch-Site": "cross-site"}, 403, "Origin"),
    ({"Content-Type": "text/plain"}, 415, "Content-Type"),  # a form a page may send anywhere
    ({"Content-Type": "application/x-www-form-urlencoded"}, 415, "Content-Type"),
], ids=["rebound-host", "cross-origin", "cross-site-fetch", "text-plain", "form"])
async def test_a_web_page_cannot_drive_the_api(single, headers, status, field):
    node = single.nodes[0]
    sent = {"Content-Type": "application/json", **auth_for(node.api), **headers}
    answer, body = await raw("POST", f"http://{node.api}/v1/services", data=json.dumps(SERVICE),
                             headers=sent)
    assert (answer, body.get("field")) == (status, field), body
    assert (await single.get(0, "/v1/services")) == []
    # The same request from the CLI's side of things (no Origin, its own Host) is served.
    same_origin = {**sent, "Content-Type": "application/json", "Host": node.api,
                   "Origin": f"http://{node.api}"}
    answer, body = await raw("POST", f"http://{node.api}/v1/services", data=json.dumps(SERVICE),
                             headers={k: v for k, v in same_origin.items()
                                      if k != "Sec-Fetch-Site"})
    assert answer == 201, body
