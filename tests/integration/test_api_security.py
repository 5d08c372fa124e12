"""The API tried as an attacker would: another local user, a web page in a browser on the
node's machine, hostile headers and bodies, connections that never finish."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import ssl
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import pytest

from node.devcluster.localcluster import LocalCluster, auth_for, ssl_for, started_cluster
from node.local_socket import socket_path
from tests.support import as_nobody

pytestmark = pytest.mark.timeout(120)

SERVICE = {"name": "web", "image": "process", "command": ["sleep", "300"], "replicas": 0}


@pytest.fixture
async def single():
    # Under a directory any user may pass through (0711), as a data dir under /var/lib is:
    # the node's own modes are all that keep another user out.
    with tempfile.TemporaryDirectory() as base:
        os.chmod(base, 0o711)
        async with started_cluster(base, 1, ["--runtime", "process"]) as cluster:
            yield cluster


def cli(
    *argv: str, env: dict[str, str] | None = None, user: str = "self"
) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "node", *argv]
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SHOAL_")}
    return subprocess.run(
        as_nobody(command) if user == "nobody" else command,
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


async def raw(method: str, url: str, **kwargs) -> tuple[int, dict]:
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, url, ssl=ssl_for(url), **kwargs) as resp,
    ):
        return resp.status, await resp.json(content_type=None)


async def raw_exchange(host: str, port: int, request: bytes, **connect) -> bytes:
    """Bytes on a socket, for headers no HTTP client library would send."""
    reader, writer = await asyncio.open_connection(host, port, **connect)
    writer.write(request)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(65536), 10)
    writer.close()
    return answer


async def test_tcp_needs_the_token_even_from_loopback(single):
    node = single.nodes[0]
    url = f"https://{node.api}/v1/cluster/token"
    status, body = await raw("GET", url)
    assert status == 401 and "token" in body["error"]
    status, _ = await raw("GET", url, headers={"Authorization": "Bearer " + "0" * 64})
    assert status == 401
    host, port = node.api.split(":")
    for bearer in ("é".encode(), b"\xff\xfe", "токен".encode()):
        answer = await raw_exchange(
            host,
            int(port),
            b"GET /v1/cluster/token HTTP/1.1\r\nHost: "
            + host.encode()
            + b"\r\nAuthorization: Bearer "
            + bearer
            + b"\r\nConnection: close\r\n\r\n",
            ssl=ssl_for(node.api),
        )
        assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
    status, body = await raw("GET", url, headers=auth_for(node.api))
    assert status == 200 and body["token"].startswith("SHOAL2-")
    # The health probe stays open and tells nothing secret.
    status, body = await raw("GET", f"https://{node.api}/healthz")
    assert status == 200 and "token" not in json.dumps(body)


async def test_another_local_user_gets_nothing(single):
    node = single.nodes[0]
    sock = socket_path(node.data_dir)
    assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600
    as_socket = cli("cluster", "token", "--addr", f"unix:{sock}", user="nobody")
    assert as_socket.returncode == 2 and "Permission denied" in as_socket.stderr
    via_dir = cli("cluster", "token", env={"SHOAL_DATA_DIR": node.data_dir}, user="nobody")
    assert via_dir.returncode == 2 and "SHOAL2-" not in via_dir.stdout
    with open(node.ca_file, "rb") as ours, tempfile.NamedTemporaryFile(suffix=".pem") as ca:
        ca.write(ours.read())
        ca.flush()
        os.chmod(ca.name, 0o644)  # the CA certificates are public
        over_tcp = cli(
            "service",
            "create",
            "--name",
            "evil",
            "--addr",
            node.api,
            "--ca",
            ca.name,
            "process",
            "id",
            user="nobody",
        )
    assert over_tcp.returncode == 1 and "token" in over_tcp.stderr
    assert (await single.get(0, "/v1/services")) == []


async def test_the_nodes_own_user_administers_it_through_its_socket(single):
    node = single.nodes[0]
    by_flag = cli("cluster", "token", "--data-dir", node.data_dir)
    assert by_flag.returncode == 0 and by_flag.stdout.startswith("SHOAL2-"), by_flag.stderr
    by_env = cli("node", "ls", "-o", "json", env={"SHOAL_DATA_DIR": node.data_dir})
    assert by_env.returncode == 0 and json.loads(by_env.stdout)[0]["name"] == "n1"
    by_addr = cli(
        "service",
        "create",
        "--name",
        "web",
        "--replicas",
        "0",
        "--addr",
        f"unix:{socket_path(node.data_dir)}",
        "process",
        "sleep",
        "1",
    )
    assert by_addr.returncode == 0, by_addr.stderr
    # Over TCP a wrong token is refused like none.
    wrong = cli(
        "node", "ls", "--addr", node.api, env={"SHOAL_TOKEN": "f" * 64, "SHOAL_CA": node.ca_file}
    )
    assert wrong.returncode == 1 and "token" in wrong.stderr


# What a page in a browser on the node's machine can send, and the field each refusal names.
PAGE_REQUESTS = [
    ({"Host": "evil.example:7420"}, 421, "Host"),  # DNS rebinding: the attacker's name
    ({"Origin": "http://evil.example"}, 403, "Origin"),
    ({"Sec-Fetch-Site": "cross-site"}, 403, "Origin"),
    ({"Content-Type": "text/plain"}, 415, "Content-Type"),  # a form a page may send anywhere
    ({"Content-Type": "application/x-www-form-urlencoded"}, 415, "Content-Type"),
]


async def test_a_web_page_cannot_drive_the_api(single):
    node = single.nodes[0]
    url = f"https://{node.api}/v1/services"
    for i, (headers, status, field) in enumerate(PAGE_REQUESTS):
        service = json.dumps({**SERVICE, "name": f"web{i}"})
        sent = {"Content-Type": "application/json", **auth_for(node.api), **headers}
        answer, body = await raw("POST", url, data=service, headers=sent)
        assert (answer, body.get("field")) == (status, field), (headers, body)
        # The same request as the CLI sends it (its own Host; a same-origin page) is served.
        fair = {
            **sent,
            "Content-Type": "application/json",
            "Host": node.api,
            "Origin": f"https://{node.api}",
        }
        fair.pop("Sec-Fetch-Site", None)
        answer, body = await raw("POST", url, data=service, headers=fair)
        assert answer == 201, (headers, body)


async def test_a_huge_command_gets_a_quick_answer_and_the_node_stays_responsive(single):
    node = single.nodes[0]
    url = f"https://{node.api}/v1/services"
    headers = {"Content-Type": "application/json", **auth_for(node.api)}
    cases = [
        ("a" * (2 << 20), 413, "body"),  # 2 MB: over the route's body limit
        ("a" * 200_000, 400, "command"),  # under it, but no argument is that long
        ("x " * 100_000, 400, "command"),
    ]
    for command, status, field in cases:
        started = time.monotonic()
        answer, body = await raw(
            "POST", url, headers=headers, data=json.dumps({**SERVICE, "command": command})
        )
        assert (answer, body.get("field")) == (status, field), body
        assert time.monotonic() - started < 2.0
        health_started = time.monotonic()
        assert (await raw("GET", f"https://{node.api}/healthz"))[0] == 200
        assert time.monotonic() - health_started < 1.0


GZIP_GARBAGE = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03garbage"


# Requests that answered 500 (or stalled the node), and the field each 4xx names now.
MALFORMED = [
    ("POST", "/v1/services", "[" * 5000 + "]" * 5000, {}, "body"),
    ("POST", "/v1/services", '{"name": "web", "image": "\\ud800"}', {}, "body"),
    ("POST", "/v1/services", GZIP_GARBAGE, {"Content-Encoding": "gzip"}, "body"),
    (
        "POST",
        "/v1/services",
        json.dumps({**SERVICE, "stop_grace_period": "9" * 450}),
        {},
        "stop_grace_period",
    ),
    (
        "POST",
        "/v1/services",
        json.dumps({**SERVICE, "resources": {"limits": {"memory": 10**30}}}),
        {},
        "resources.limits.memory",
    ),
    (
        "POST",
        "/v1/services",
        json.dumps({**SERVICE, "restart": {"max_attempts": 2**64}}),
        {},
        "restart.max_attempts",
    ),
    ("POST", "/v1/services", json.dumps({**SERVICE, "replicas": 10**6}), {}, "replicas"),
    ("POST", "/v1/services", json.dumps({**SERVICE, "image": "x" * (300 << 10)}), {}, "body"),
    ("POST", "/v1/secrets", json.dumps({"name": "s", "data": "é"}), {}, "data"),
    ("PATCH", "/v1/services/web?version=99999999999999999999", "{}", {}, "version"),
    ("GET", "/v1/tasks/x/logs?tail=²", None, {}, "tail"),
    ("GET", "/v1/events?since=99999999999999999999", None, {}, "since"),
]


async def test_malformed_input_is_a_4xx_naming_the_field(single):
    node = single.nodes[0]
    for method, path, data, headers, field in MALFORMED:
        sent = {"Content-Type": "application/json", **auth_for(node.api), **headers}
        status, body = await raw(method, f"https://{node.api}{path}", data=data, headers=sent)
        assert 400 <= status < 500 and body.get("field") == field, (path, field, status, body)
        assert (await raw("GET", f"https://{node.api}/healthz"))[0] == 200
    with open(node.log_path) as log:
        assert "Traceback" not in log.read()


async def test_half_open_connections_cannot_starve_the_api(single):
    from node.api.listen import IDLE_TIMEOUT, MAX_PER_CLIENT

    node = single.nodes[0]
    host, port = node.api.split(":")
    held, refused = [], 0
    for _ in range(MAX_PER_CLIENT + 20):  # each sends half a request line and waits
        try:
            reader, writer = await asyncio.open_connection(
                host, int(port), local_addr=("127.0.0.1", 0), ssl=ssl_for(node.api)
            )
        except (ConnectionError, ssl.SSLError):  # closed before its handshake
            refused += 1
            continue
        writer.write(b"GET /v1/cluster HTTP/1.1\r\nHo")
        held.append((reader, writer))
    assert (len(held), refused) == (MAX_PER_CLIENT, 20), "the per-client limit was not kept"
    # Another client is still served at once.
    answer = await raw_exchange(
        host,
        int(port),
        b"GET /healthz HTTP/1.1\r\nHost: " + host.encode() + b"\r\nConnection: close\r\n\r\n",
        local_addr=("127.0.0.2", 0),
        ssl=ssl_for(node.api),
    )
    assert answer.startswith(b"HTTP/1.1 200")
    # And the half-open ones are dropped once they have idled IDLE_TIMEOUT.
    closed = await asyncio.gather(
        *(_closed_within(reader, IDLE_TIMEOUT + 5) for reader, _ in held[:MAX_PER_CLIENT])
    )
    assert all(closed)
    for _, writer in held:
        writer.close()


async def test_connections_that_never_start_tls_count_and_time_out(single):
    """1,000 connections that never send a ClientHello, from 8 addresses, and 300 more from
    one: those over the per-client limit are closed at once, a TLS client is still served
    at once, and the rest are closed once the handshake timeout has passed."""
    from node.api.listen import HANDSHAKE_TIMEOUT, MAX_PER_CLIENT, raise_file_limit

    raise_file_limit()
    node = single.nodes[0]
    host, port = node.api.split(":")
    sources = [f"127.0.1.{i}" for i in range(1, 9) for _ in range(125)] + ["127.0.2.1"] * 300
    connections = [
        await asyncio.open_connection(host, int(port), local_addr=(source, 0)) for source in sources
    ]
    held = [reader for reader, _ in connections]
    opened = time.monotonic()
    await asyncio.sleep(0.5)
    crowd = held[1000:]
    refused = await asyncio.gather(*(_closed_within(r, 1.0) for r in crowd[MAX_PER_CLIENT:]))
    assert all(refused), "connections over the per-client limit were kept while handshaking"
    asked = time.monotonic()
    answer = await raw_exchange(
        host,
        int(port),
        b"GET /healthz HTTP/1.1\r\nHost: " + host.encode() + b"\r\nConnection: close\r\n\r\n",
        local_addr=("127.0.0.2", 0),
        ssl=ssl_for(node.api),
    )
    took = time.monotonic() - asked
    print(f"/healthz over TLS beside {len(held)} silent connections: {took * 1000:.0f} ms")
    assert answer.startswith(b"HTTP/1.1 200") and took < 2.0
    waiting = held[:1000] + crowd[:MAX_PER_CLIENT]
    assert not any(await asyncio.gather(*(_closed_within(r, 0.01) for r in waiting)))
    left = HANDSHAKE_TIMEOUT + 3 - (time.monotonic() - opened)
    closed = await asyncio.gather(*(_closed_within(r, left) for r in waiting))
    print(f"{sum(closed)} closed {time.monotonic() - opened:.1f} s after the last was opened")
    assert all(closed), "silent connections outlived the handshake timeout"
    for _, writer in connections:
        writer.close()


async def _closed_within(reader: asyncio.StreamReader, seconds: float) -> bool:
    try:
        return await asyncio.wait_for(reader.read(), seconds) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


async def test_the_data_dir_and_the_nodes_files_are_private(single):
    node = single.nodes[0]
    marker = "file-mode-marker-7"
    created = cli(
        "service",
        "create",
        "--name",
        "printer",
        "--replicas",
        "1",
        "--data-dir",
        node.data_dir,
        "process",
        "sh",
        "-c",
        f"echo {marker}; sleep 300",
    )
    assert created.returncode == 0, created.stderr

    async def logged() -> list[str]:
        found = []
        for root, _, files in os.walk(os.path.join(node.data_dir, "tasks")):
            found += [
                os.path.join(root, f)
                for f in files
                if f == "output.log" and marker in Path(root, f).read_text()
            ]
        return found

    from node.devcluster.localcluster import wait_for

    (log_file,) = await wait_for(logged, 30, "the task's output")
    assert stat.S_IMODE(os.stat(node.data_dir).st_mode) == 0o700
    private = [
        os.path.join(node.data_dir, name)
        for name in os.listdir(node.data_dir)
        if os.path.isfile(os.path.join(node.data_dir, name))
    ]
    for root, _, files in os.walk(os.path.join(node.data_dir, "raft")):
        private += [os.path.join(root, f) for f in files]
    assert any(p.endswith(".journal") for p in private) and log_file
    loose = {
        p: oct(stat.S_IMODE(os.stat(p).st_mode))
        for p in [*private, log_file]
        if stat.S_IMODE(os.stat(p).st_mode) & 0o077
    }
    assert loose == {}
    # Another local user reads none of it.
    peek = subprocess.run(as_nobody(["cat", log_file, *private]), capture_output=True, text=True)
    assert peek.returncode != 0 and marker not in peek.stdout
    assert cli("service", "rm", "printer", "--data-dir", node.data_dir).returncode == 0


async def test_a_recorded_join_cannot_be_played_again(single):
    """A join of an invented node (64 CPUs, 1 TiB), captured on the wire, replayed after the
    node was removed, or signed long ago: refused."""
    from consensus.model import Node, Resources
    from consensus.wire import to_plain
    from node.join import JoinRequest
    from node.pki.authority import make_csr, new_key_pem
    from node.security import JoinToken

    token = JoinToken.parse(single.token)
    cluster_id = (await single.get(0, "/v1/cluster"))["cluster_id"]
    ghost = Node(
        "ab0000000001",
        "ghost",
        "127.0.0.99",
        7420,
        7421,
        7422,
        resources=Resources(64_000, 1 << 40),
        key_hash="ab" * 32,
    )
    csr = make_csr(ghost.id, new_key_pem()).decode()
    captured = to_plain(JoinRequest(cluster_id, ghost, csr=csr).signed(token))
    url = f"https://{single.nodes[0].api}/v1/join"
    status, body = await raw("POST", url, json=captured)
    assert status == 200, body
    removed = cli("node", "rm", "ghost", "--force", "--data-dir", single.nodes[0].data_dir)
    assert removed.returncode == 0, removed.stderr
    status, body = await raw("POST", url, json=captured)
    assert status == 403 and "replayed" in body["error"], body
    # Signed an hour ago (with the token), never sent before: too old all the same.
    stale = JoinRequest(cluster_id, ghost, nonce="ab" * 16, at=time.time() - 3600, csr=csr)
    stale = dataclasses.replace(stale, proof=token.proof(stale.signed_payload()))
    status, body = await raw("POST", url, json=to_plain(stale))
    assert status == 403 and "window" in body["error"], body
    assert [n["name"] for n in await single.get(0, "/v1/nodes")] == ["n1"]


async def test_process_tasks_run_unprivileged_and_cannot_use_the_host():
    """A service binding `/` ran as root and read /etc/shadow: now its task runs as nobody,
    a read-only mount the runtime cannot enforce is refused, and a node can refuse binds."""
    probe = (
        "id -u; cat /etc/shadow >/dev/null 2>&1 && echo READ-SHADOW; "
        "touch host/root/owned 2>/dev/null && echo WROTE-ROOT; echo ok > mine && echo WROTE-OWN; "
        "sleep 300"
    )
    with tempfile.TemporaryDirectory() as base:
        os.chmod(base, 0o711)
        cluster = LocalCluster(base, 2, ["--runtime", "process", "--task-user", "nobody"])
        first, second = cluster.nodes
        second.extra_args += ["--host-binds", "no"]
        try:
            await cluster.start()
            admin = ["--data-dir", first.data_dir]
            created = cli(
                "service",
                "create",
                "--name",
                "probe",
                "--replicas",
                "1",
                "--constraint",
                "node.hostname==n1",
                "--mount",
                "type=bind,source=/,target=/host",
                *admin,
                "process",
                "sh",
                "-c",
                probe,
            )
            assert created.returncode == 0, created.stderr
            frozen = cli(
                "service",
                "create",
                "--name",
                "frozen",
                "--replicas",
                "1",
                "--constraint",
                "node.hostname==n1",
                "--mount",
                "type=volume,source=data,target=/data,readonly",
                *admin,
                "process",
                "sleep",
                "300",
            )
            assert frozen.returncode == 0, frozen.stderr
            bound = cli(
                "service",
                "create",
                "--name",
                "bound",
                "--replicas",
                "1",
                "--constraint",
                "node.hostname==n2",
                "--mount",
                "type=bind,source=/tmp,target=/tmp",
                *admin,
                "process",
                "sleep",
                "300",
            )
            assert bound.returncode == 0, bound.stderr

            from node.devcluster.localcluster import wait_for

            async def output() -> str:
                for root, _, files in os.walk(os.path.join(first.data_dir, "tasks")):
                    if "output.log" in files:
                        text = Path(root, "output.log").read_text()
                        if "WROTE-OWN" in text:
                            return text
                return ""

            text = await wait_for(output, 30, "the probe task's output")
            assert text.split()[0] == "65534"
            assert "READ-SHADOW" not in text and "WROTE-ROOT" not in text

            async def errors() -> dict[str, str]:
                tasks = await cluster.get(0, "/v1/tasks")
                found = {
                    t["service"]: t["error"]
                    for t in tasks
                    if t["service"] in ("frozen", "bound") and t["error"]
                }
                return found if len(found) == 2 else {}

            failed = await wait_for(errors, 30, "the refused tasks to fail")
            assert "read-only" in failed["frozen"], failed
            assert "--host-binds no" in failed["bound"], failed
            for name in ("probe", "frozen", "bound"):
                cli("service", "rm", name, *admin)
        finally:
            cluster.stop()
            print(cluster.logs())
