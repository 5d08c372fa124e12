"""Manual control of the voter set (`shoal node promote|demote`) and `shoal node rm`."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from node.devcluster.localcluster import LocalCluster, api_token_for, ca_for, wait_for

pytestmark = pytest.mark.timeout(240)


def shoal(*args: str, addr: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "node", *args, "--addr", addr],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ, SHOAL_TOKEN=api_token_for(addr), SHOAL_CA=ca_for(addr)),
    )


async def _roles(cluster: LocalCluster, via: int) -> dict[str, str]:
    return {n["name"]: n["role"] for n in await cluster.get(via, "/v1/nodes")}


async def test_promote_demote_and_remove_nodes(tmp_path):
    cluster = LocalCluster(str(tmp_path), 4, ["--runtime", "process"])
    try:
        await cluster.start()

        async def three_plus_one() -> dict:
            roles = await _roles(cluster, 0)
            return roles if sorted(roles.values()) == ["member"] + ["voter"] * 3 else {}

        roles = await wait_for(three_plus_one, timeout=60, what="3 voters and 1 member")
        (member,) = [name for name, role in roles.items() if role == "member"]
        leader = cluster.nodes[await cluster.leader_index()].name
        voter = next(name for name, role in roles.items() if role == "voter" and name != leader)
        addr = cluster.nodes[0].api

        # Demote a voter: the member takes its seat, so the set stays at 3.
        demoted = shoal("node", "demote", voter, addr=addr)
        assert demoted.returncode == 0, demoted.stderr
        roles = await _roles(cluster, 0)
        assert roles[voter] == "member" and roles[member] == "voter"
        assert sum(r == "voter" for r in roles.values()) == 3
        raft = await cluster.get(cluster.nodes.index(_node(cluster, leader)), "/v1/cluster")
        partners = raft["this_node"]["raft_partners"]
        assert _node(cluster, voter).address + ":7421" not in partners
        assert _node(cluster, member).address + ":7421" in partners

        # Promote it back: another voter (never the leader) steps down in exchange.
        promoted = shoal("node", "promote", voter, addr=addr)
        assert promoted.returncode == 0, promoted.stderr
        roles = await _roles(cluster, 0)
        assert roles[voter] == "voter" and roles[leader] == "voter"
        assert sum(r == "voter" for r in roles.values()) == 3
        # It says which voters there are now, so the one that stepped down in exchange shows.
        said, _, listed = promoted.stdout.strip().partition("; voters: ")
        assert said == f"{voter} is now a voter"
        assert listed.split(", ") == sorted(n for n, r in roles.items() if r == "voter")

        # The leader cannot be demoted from under itself.
        refused = shoal("node", "demote", leader, addr=addr)
        assert refused.returncode == 1 and "leader" in refused.stderr

        # rm: a ready node needs --force; a stopped one goes, with its Raft seat.
        (spare,) = [n for n, r in (await _roles(cluster, 0)).items() if r == "member"]
        busy = shoal("node", "rm", spare, addr=addr)
        assert busy.returncode == 1 and "--force" in busy.stderr
        victim = next(
            n for n, r in (await _roles(cluster, 0)).items() if r == "voter" and n != leader
        )
        _node(cluster, victim).stop()

        async def down() -> bool:
            return (await cluster.get(0, f"/v1/nodes/{victim}"))["status"] == "down"

        await wait_for(down, what=f"{victim} down")
        removed = shoal("node", "rm", victim, addr=addr)
        assert removed.returncode == 0, removed.stderr
        roles = await _roles(cluster, 0)
        assert victim not in roles
        # Autopilot keeps the voter set at 3 with the spare member.
        await wait_for(lambda: _voter_count_is(cluster, 3), what="3 voters again")

        forced = shoal("node", "rm", spare if spare != victim else member, "--force", addr=addr)
        assert forced.returncode == 0, forced.stderr
        gone = _node(cluster, spare if spare != victim else member)
        await wait_for(lambda: _exited(gone), what="the removed node to stop itself")
    finally:
        cluster.stop()
        print(cluster.logs())


def _node(cluster: LocalCluster, name: str):
    return next(n for n in cluster.nodes if n.name == name)


async def _voter_count_is(cluster: LocalCluster, count: int) -> bool:
    roles = await _roles(cluster, 0)
    return sum(r == "voter" for r in roles.values()) == count


async def _exited(node) -> bool:
    return not node.running
