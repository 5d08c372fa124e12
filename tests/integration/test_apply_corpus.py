"""The public corpus (tests/fixtures/corpus) applied with `shoal apply -f` on one 3-node
process-runtime cluster: each file applies, creating or updating the services it defines, or
is refused with exit 2 naming the field; each directory is a stack, removed with `shoal stack
rm` before the next. Then, on one stack: --dry-run changes nothing, --prune removes what the
file dropped, and another stack's service is never taken over."""

from __future__ import annotations

import asyncio
import json
import os
import time
from itertools import groupby
from pathlib import Path

import aiohttp
import pytest
import yaml

from node.devcluster.localcluster import EQUAL_PROCESS_NODES, auth_for, ssl_for, started_cluster
from node.manifests import STACK_LABEL
from node.manifests.local import default_stack
from tests.integration.cluster_support import must, shoal
from tests.unit.node.test_manifest_bounds import LAUGHS
from tests.unit.node.test_manifest_corpus import (
    CORPUS,
    EXTERNAL_NETWORKS,
    EXTERNAL_SECRETS,
    FILES,
    REFUSED,
    corpus_outcome,
)

pytestmark = pytest.mark.timeout(300)


async def _shoal(*argv: str, addr: str):
    return await asyncio.to_thread(shoal, *argv, addr=addr)


async def _stack(cluster, stack: str) -> dict[str, dict]:
    return {
        s["name"]: s
        for s in await cluster.get(0, "/v1/services")
        if s["spec"]["labels"].get(STACK_LABEL) == stack
    }


async def _refusals(addr: str) -> None:
    """The files refused before anything reaches the cluster: several CLIs at once."""
    gate = asyncio.Semaphore(4)

    async def one(path: Path) -> None:
        name = str(path.relative_to(CORPUS))
        async with gate:
            done = await _shoal("apply", f"--file={path}", addr=addr)
        field, reason = REFUSED[name]
        assert done.returncode == 2, f"{name}: {done.stdout}"
        assert f"{field}: " in done.stderr and reason in done.stderr, done.stderr

    await asyncio.gather(*(one(p) for p in FILES if str(p.relative_to(CORPUS)) in REFUSED))


async def _apply_corpus(cluster, addr: str) -> None:
    environ = {k: v for k, v in os.environ.items() if k != "SHOAL_TOKEN"}
    applied = [p for p in FILES if str(p.relative_to(CORPUS)) not in REFUSED]
    for directory, paths in groupby(applied, key=lambda p: p.parent):
        stack = default_stack(directory / "x")
        expected: set[str] = set()
        for path in paths:
            name = str(path.relative_to(CORPUS))
            async with cluster.nodes[0].client() as client:  # as `shoal secret create` would
                for secret in EXTERNAL_SECRETS.get(name, ()):
                    await client.post(
                        "/v1/secrets", {"name": secret, "data": "c2VjcmV0", "exist_ok": True}
                    )
                for network in EXTERNAL_NETWORKS.get(name, ()):
                    await client.post("/v1/networks", {"name": network, "exist_ok": True})
            done = await _shoal("apply", f"--file={path}", "-o", "json", addr=addr)
            assert done.returncode == 0, f"{name}: {done.stderr}"
            answer = json.loads(done.stdout)
            defined = {spec.name for spec in corpus_outcome(path, environ).specs}
            assert defined <= {s["name"] for s in answer["services"]}, name
            assert answer["stack"] == stack
            expected |= defined
        held = await _stack(cluster, stack)
        assert set(held) == expected, directory
        if directory.name == "example-voting-app" and "kubernetes" in directory.parts:
            # vote-service.yaml came after vote-deployment.yaml: its NodePort is published.
            assert {"target": 80, "published": 31000} in [
                {k: p[k] for k in ("target", "published")} for p in held["vote"]["spec"]["ports"]
            ]
        if held:
            must(await _shoal("stack", "rm", stack, addr=addr))
    assert [s["name"] for s in await cluster.get(0, "/v1/services")] == []


async def _stack_lifecycle(cluster, addr: str, tmp_path: Path) -> None:
    source = CORPUS / "compose/example-voting-app/docker-stack.yml"
    names = {"redis", "db", "vote", "result", "worker"}
    dry = json.loads(
        must(
            await _shoal(
                "apply", f"--file={source}", "--stack", "vote", "--dry-run", "-o", "json", addr=addr
            )
        )
    )
    assert dry["dry_run"] and {(s["name"], s["action"]) for s in dry["services"]} == {
        (n, "created") for n in names
    }
    assert await _stack(cluster, "vote") == {}

    must(await _shoal("apply", f"--file={source}", "--stack", "vote", addr=addr))
    assert set(await _stack(cluster, "vote")) == names
    listed = json.loads(must(await _shoal("stack", "ls", "-o", "json", addr=addr)))
    assert {"name": "vote", "services": 5} in listed
    tasks = json.loads(must(await _shoal("stack", "ps", "vote", "-o", "json", addr=addr)))
    assert {t["service"] for t in tasks} == names

    taken = await _shoal("apply", f"--file={source}", "--stack", "other", addr=addr)
    assert taken.returncode != 0 and "belongs to stack 'vote'" in taken.stderr

    doc = yaml.safe_load(source.read_text())
    del doc["services"]["worker"]
    doc["services"]["vote"]["deploy"]["replicas"] = 3
    smaller = tmp_path / "vote" / "docker-stack.yml"
    smaller.parent.mkdir()
    smaller.write_text(yaml.safe_dump(doc))
    dry = json.loads(
        must(
            await _shoal(
                "apply", f"--file={smaller}", "--prune", "--dry-run", "-o", "json", addr=addr
            )
        )
    )
    actions = {s["name"]: (s["action"], s.get("changes")) for s in dry["services"]}
    assert actions["worker"] == ("removed", None) and actions["vote"] == ("updated", ["replicas"])
    assert actions["db"] == ("unchanged", None)
    assert set(await _stack(cluster, "vote")) == names
    must(await _shoal("apply", f"--file={smaller}", "--prune", addr=addr))
    held = await _stack(cluster, "vote")
    assert set(held) == names - {"worker"} and held["vote"]["spec"]["replicas"] == 3

    removed = must(await _shoal("stack", "rm", "vote", addr=addr))
    assert sorted(removed.split()[2::3]) == sorted(names - {"worker"})
    assert await _stack(cluster, "vote") == {}


async def _small_answers_to_small_documents(cluster, addr: str) -> None:
    """499 bytes of nested aliases: a short 400 at once, and the node stays well (it once
    answered 722 MB and was declared dead)."""
    async with aiohttp.ClientSession() as session:
        for body, content_type in (
            (LAUGHS, "application/yaml"),
            (json.dumps({"document": LAUGHS}), "application/json"),
        ):
            started = time.monotonic()
            async with session.post(
                f"{addr}/v1/apply",
                data=body.encode(),
                ssl=ssl_for(addr),
                headers={"Content-Type": content_type, **auth_for(addr)},
            ) as resp:
                answer = await resp.read()
            assert resp.status == 400 and len(answer) < 1_000, answer[:300]
            assert b"aliases expand it" in answer and time.monotonic() - started < 2
    assert len(await cluster.get(2, "/v1/nodes")) == 3


async def test_the_corpus_and_a_stacks_life_on_three_nodes(tmp_path):
    (tmp_path / "cluster").mkdir()
    async with started_cluster(str(tmp_path / "cluster"), 3, EQUAL_PROCESS_NODES) as cluster:
        addr = f"https://{cluster.nodes[1].api}"  # a follower: writes are forwarded
        await _small_answers_to_small_documents(cluster, addr)
        await _refusals(addr)
        await _apply_corpus(cluster, addr)
        await _stack_lifecycle(cluster, addr, tmp_path)
