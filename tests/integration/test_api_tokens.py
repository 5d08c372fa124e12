"""Scoped tokens on a live cluster: each role reaches what it may and is told which permission
it lacks; a revocation holds on every node as soon as it is answered; writes are audited in
the event stream without secrets; a join recorded on the wire is refused by the next leader."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time

import aiohttp
import pytest

from consensus.model import Node, Resources
from consensus.wire import to_plain
from node.devcluster.localcluster import NodeProc, ssl_for, started_cluster, wait_for
from node.join import JoinRequest
from node.pki.authority import make_csr, new_key_pem
from node.security import JoinToken

pytestmark = pytest.mark.timeout(120)


def service(name: str) -> dict:
    return {"name": name, "image": "process", "command": ["sleep", "300"], "replicas": 0}


async def call(
    node: NodeProc, method: str, path: str, token: str = "", body: object = None
) -> tuple[int, dict]:
    headers = {"Authorization": f"Bearer {token or node.api_token}"}
    async with (
        aiohttp.ClientSession() as session,
        session.request(
            method, f"{node.url}{path}", json=body, headers=headers, ssl=node.ssl_context()
        ) as resp,
    ):
        return resp.status, await resp.json(content_type=None)


def cli(node: NodeProc, *argv: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SHOAL_")}
    return subprocess.run(
        [sys.executable, "-m", "node", *argv, "--data-dir", node.data_dir],
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def events_text(node: NodeProc) -> str:
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"{node.url}/v1/events?follow=0",
            headers={"Authorization": f"Bearer {node.api_token}"},
            ssl=node.ssl_context(),
        ) as resp,
    ):
        return await resp.text()


def audits(text: str) -> list[dict]:
    return [
        json.loads(line[len("data: ") :])
        for block in text.split("\n\n")
        if "event: audit" in block
        for line in block.splitlines()
        if line.startswith("data: ")
    ]


async def test_roles_scopes_revocation_expiry_and_the_audit_trail(tmp_path):
    async with started_cluster(str(tmp_path), 3, ["--runtime", "process"]) as cluster:
        n1, n2, n3 = cluster.nodes
        made = cli(n1, "token", "create", "--role", "read-only", "--name", "reader")
        assert made.returncode == 0, made.stderr
        reader = made.stdout.strip()
        assert reader.startswith("SHOALT-") and "shown only now" in made.stderr
        tokens = {}
        for name, body in (
            ("ops", {"role": "operator", "services": "web-*"}),
            ("brief", {"role": "read-only", "ttl": "2s"}),
            ("boss", {"role": "admin"}),
            ("deployer", {"role": "operator"}),
        ):
            status, answer = await call(n1, "POST", "/v1/tokens", body={**body, "name": name})
            assert status == 201, answer
            tokens[name] = answer["token"]
        for name in ("web-1", "db"):
            assert (await call(n1, "POST", "/v1/services", body=service(name)))[0] == 201
        bad = cli(n1, "token", "create", "--role", "operator", "--ttl", "soon")
        assert bad.returncode == 2 and "ttl" in bad.stderr, bad.stderr
        shown = cli(n2, "token", "ls")
        assert shown.returncode == 0 and "reader" in shown.stdout and "web-*" in shown.stdout
        assert "SHOALT-" not in shown.stdout
        status, listed = await call(n2, "GET", "/v1/tokens")
        assert status == 200 and {t["name"] for t in listed} == {
            "reader",
            "ops",
            "brief",
            "boss",
            "deployer",
        }
        assert "SHOALT-" not in json.dumps(listed) and "hash" not in json.dumps(listed)

        # Read-only: reads on any node, no writes, and the answer names the permission.
        assert (await call(n2, "GET", "/v1/services", reader))[0] == 200
        status, body = await call(n2, "POST", "/v1/services", reader, service("web-9"))
        assert status == 403 and "'write' permission" in body["error"], body
        status, body = await call(n3, "DELETE", "/v1/services/db", reader)
        assert status == 403 and "'write' permission" in body["error"], body
        status, body = await call(n3, "GET", "/v1/cluster/token", reader)
        assert status == 403 and "'admin' permission" in body["error"], body
        # An operator limited to web-*: scales web-1, not db; creates web-2, not api.
        ops = tokens["ops"]
        status, body = await call(n3, "PATCH", "/v1/services/web-1", ops, {"replicas": 2})
        assert status == 200 and body["spec"]["replicas"] == 2, body
        status, body = await call(n3, "PATCH", "/v1/services/db", ops, {"replicas": 2})
        assert status == 403 and "web-*" in body["error"], body
        assert (await call(n2, "POST", "/v1/services", ops, service("web-2")))[0] == 201
        status, body = await call(n2, "POST", "/v1/services", ops, service("api"))
        assert status == 403 and "web-*" in body["error"], body
        status, body = await call(n2, "POST", "/v1/secrets", ops, {"name": "s", "data": "eA=="})
        assert status == 403 and "no single service" in body["error"], body
        status, body = await call(n2, "DELETE", "/v1/nodes/n3", ops)
        assert status == 403 and "'admin' permission" in body["error"], body
        # A host path mounted into a task reaches what the node's user can: admins only. An
        # operator still changes a service an admin gave one, adding none.
        bound = {**service("web-3"), "volumes": [{"type": "bind", "source": "/", "target": "/h"}]}
        status, body = await call(n2, "POST", "/v1/services", ops, bound)
        assert status == 403 and "'admin' permission" in body["error"], body
        status, body = await call(n2, "POST", "/v1/apply", tokens["deployer"], [bound])
        assert status == 403 and body["field"] == "volumes", body
        assert (await call(n2, "POST", "/v1/services", tokens["boss"], bound))[0] == 201
        status, body = await call(n2, "PATCH", "/v1/services/web-3", ops, {"labels": {"a": "b"}})
        assert status == 200, body
        # Internal routes take a node's key, never a user's token, even an admin's.
        status, body = await call(n2, "POST", "/v1/internal/removed", tokens["boss"])
        assert status == 403 and "node's key" in body["error"], body
        # A secret made by an admin token: its value reaches no audit entry.
        status, _ = await call(
            n1,
            "POST",
            "/v1/secrets",
            tokens["boss"],
            {"name": "db-password", "data": "aHVudGVyMg=="},
        )
        assert status == 201

        # Revoked through n1: refused by n3 as soon as the revocation is answered.
        removed = cli(n1, "token", "rm", "reader")
        assert removed.returncode == 0, removed.stderr
        status, body = await call(n3, "GET", "/v1/services", reader)
        assert status == 401 and "revoked" in body["error"], body
        status, body = await call(n2, "GET", "/v1/services", "SHOALT-" + reader[7:-1] + "x")
        assert status == 401
        # Expired (made with --ttl 2s).
        await asyncio.sleep(max(0.0, listed_expiry(listed, "brief") - time.time()))
        status, body = await call(n2, "GET", "/v1/services", tokens["brief"])
        assert status == 401 and "expired" in body["error"], body

        async def audited() -> list[dict]:
            found = audits(await events_text(n2))
            return found if any(a["detail"]["path"] == "/v1/tokens/reader" for a in found) else []

        entries = await wait_for(audited, what="the audit events of the writes")
        text = await events_text(n2)
        seen = {
            (
                a["detail"]["who"].split(" (")[0],
                a["detail"]["method"],
                a["detail"]["path"],
                a["detail"]["status"],
            )
            for a in entries
        }
        assert ("token ops", "PATCH", "/v1/services/web-1", 200) in seen
        assert ("token ops", "PATCH", "/v1/services/db", 403) in seen
        assert ("token reader", "POST", "/v1/services", 403) in seen
        assert ("local", "POST", "/v1/tokens", 201) in seen
        assert ("local", "DELETE", "/v1/tokens/reader", 200) in seen
        web2 = [a for a in entries if a["detail"]["resource"] == "web-2"]
        assert web2 and web2[0]["service"] == "web-2" and web2[0]["detail"]["role"] == "operator"
        assert any(a["detail"]["resource"] == "db-password" for a in entries)
        for secret in (*tokens.values(), reader, "aHVudGVyMg==", "hunter2"):
            assert secret not in text
        assert not any(a["detail"]["method"] == "GET" for a in entries)


def listed_expiry(rows: list[dict], name: str) -> float:
    return next(r["expires_at"] for r in rows if r["name"] == name)


async def test_a_recorded_join_is_refused_by_the_next_leader(tmp_path):
    async with started_cluster(str(tmp_path), 3, ["--runtime", "process"]) as cluster:
        token = JoinToken.parse(cluster.token)
        cluster_id = (await cluster.get(0, "/v1/cluster"))["cluster_id"]
        ghost = Node(
            "ab0000000002",
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
        leader = await cluster.leader_index()
        async with aiohttp.ClientSession() as session:
            url = f"{cluster.nodes[leader].url}/v1/join"
            async with session.post(url, json=captured, ssl=ssl_for(url)) as resp:
                assert resp.status == 200, await resp.text()
        other = next(i for i in range(3) if i != leader)
        status, body = await call(cluster.nodes[other], "DELETE", "/v1/nodes/ghost?force=true")
        assert status == 200, body
        cluster.nodes[leader].kill9()
        survivors = [i for i in range(3) if i != leader]
        successor = await cluster.leader_index(survivors)
        async with aiohttp.ClientSession() as session:
            url = f"{cluster.nodes[successor].url}/v1/join"
            async with session.post(url, json=captured, ssl=ssl_for(url)) as resp:
                body = await resp.json(content_type=None)
                assert resp.status == 403 and "replayed" in body["error"], body
        names = {n["name"] for n in (await call(cluster.nodes[successor], "GET", "/v1/nodes"))[1]}
        assert "ghost" not in names
