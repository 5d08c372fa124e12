"""`DATA_DIR/join-token` stays current on every node of a real 3-node cluster: after `shoal
cluster rotate-token` and after `rotate-ca` each node's file holds the new token (0600), and
the token rotated away is refused; a file left stale (as by a node that was down, or by an
older Shoal) is named by `shoal node doctor` with the rotation it missed, and rewritten when
the node starts."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

from node.config import load, write_token
from node.devcluster.localcluster import LocalCluster, NodeProc, started_cluster, wait_for
from node.security import JoinToken
from tests.integration.cluster_support import must, shoal
from tests.integration.test_tls import join

pytestmark = pytest.mark.timeout(150)


def doctor(node: NodeProc) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "node", "node", "doctor", "--data-dir", node.data_dir],
        capture_output=True,
        text=True,
        timeout=60,
    )


def held(node: NodeProc) -> str:
    with open(node.token_path) as f:
        return f.read().strip()


async def all_hold(cluster: LocalCluster, token: str) -> bool:
    return all(held(node) == token for node in cluster.nodes)


async def test_every_nodes_join_token_file_follows_the_rotations(tmp_path):
    async with started_cluster(str(tmp_path), 3, ["--runtime", "process"]) as cluster:
        first, _, third = cluster.nodes
        old = cluster.token
        assert await all_hold(cluster, old)

        rotated = must(shoal("cluster", "rotate-token", addr=first.api)).strip()
        assert rotated.startswith("SHOAL2-") and rotated != old
        await wait_for(lambda: all_hold(cluster, rotated), 20, "every file to hold the new token")
        for node in cluster.nodes:
            assert stat.S_IMODE(os.stat(node.token_path).st_mode) == 0o600
        code, said = await join(NodeProc(4, cluster.block, str(tmp_path)), first.api, old)
        assert code == 1 and "wrong or rotated join token" in said, said

        by_new_ca = must(shoal("cluster", "rotate-ca", addr=first.api)).strip()
        assert by_new_ca != rotated
        await wait_for(lambda: all_hold(cluster, by_new_ca), 20, "every file to name the new CA")
        assert doctor(third).returncode == 0

        third.stop()
        write_token(third.data_dir, rotated)
        checked = doctor(third)
        assert checked.returncode == 1, checked.stdout
        assert "FAIL join token" in checked.stdout and "is stale" in checked.stdout
        assert "rotate-ca" in checked.stdout and rotated not in checked.stdout
        current_ca = JoinToken.parse(by_new_ca).ca_digest
        write_token(
            third.data_dir, str(load(third.data_dir).identity.keys.join_token(current_ca, 0))
        )
        checked = doctor(third)
        assert "is stale" in checked.stdout and "rotate-token" in checked.stdout, checked.stdout
        third.start()
        await wait_for(lambda: all_hold(cluster, by_new_ca), 30, "the restarted node's file")
        checked = doctor(third)
        assert "ok   join token: the cluster's current token" in checked.stdout, checked.stdout
