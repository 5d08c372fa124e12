"""Backups and disaster recovery on real node processes (process runtime).

- A 3-node cluster with a service, a secret, a config and a network is saved to a snapshot
  file, stopped, its cluster state wiped on every machine (the machines' task processes and
  their records stay), restored on one machine and rejoined by the others with the new
  token: the same services, secrets, configs and networks; every task adopted (same ids,
  same pids, none started twice); the adopted tasks still read their secret, and a new task
  reads it too (sealed again under the new cluster's secret).
- Two of three voters lost for good: the survivor refuses nothing on its own and has no
  quorum; `--force-new-cluster` makes it the only voter with every write it acknowledged;
  two fresh nodes join and writes work.
- A data dir of another cluster, of a newer Shoal, or with a damaged Raft log is refused
  with one line that says why and what to do (exit 2); `shoal node doctor` names the damage.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys

import pytest

from consensus.snapshot import FORMAT
from netoverlay.gossip.keyring import key_id
from node import backup
from node.config import load
from node.devcluster.localcluster import EQUAL_PROCESS_NODES, NodeProc, stop_all, wait_for
from node.runtime.process_records import load_records
from node.security import ClusterKeys, JoinToken
from tests.integration.cluster_support import live, must, shoal, tasks_of

pytestmark = pytest.mark.timeout(180)

SECRET = b"s3cret-for-the-restore"
SECRET_HASH = hashlib.sha256(SECRET).hexdigest()
# Prints the hash of its secret file every 0.3 s: it reads the file all along.
READER = 'while :; do sha256sum "$SHOAL_SECRETS_DIR/dbpw" | cut -d" " -f1; sleep 0.3; done'
# What a node keeps of the cluster; what stays is the machine's (task records and files).
CLUSTER_STATE = ("node.json", "join-token", "raft", "tls", "snapshots", "shoal.sock")


def node_cli(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "node", *argv], capture_output=True, text=True, timeout=60
    )


def ids_cluster(node: NodeProc) -> str:
    return load(node.data_dir).identity.cluster_id


def pids(node: NodeProc) -> dict[str, int]:
    return {r.task_id: r.pid for r in load_records(node.data_dir)}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


def output_of(node: NodeProc, task_id: str) -> str:
    with open(os.path.join(node.data_dir, "tasks", task_id, "output.log"), errors="replace") as f:
        return f.read()


async def test_restore_a_wiped_cluster_from_a_snapshot_and_adopt_its_tasks(fresh, tmp_path):
    cluster = fresh(3)
    for node in cluster.nodes:  # each also keeps its last 2 snapshots, one a second
        node.extra_args += ["--snapshot-keep", "2", "--snapshot-interval", "1"]
    await cluster.start()
    n1, n2, n3 = cluster.nodes
    addr = n2.api
    config_file = tmp_path / "app.conf"
    config_file.write_text("mode=restored\n")
    must(
        subprocess.run(
            [sys.executable, "-m", "node", "secret", "create", "--addr", addr, "dbpw", "-"],
            input=SECRET,
            capture_output=True,
            timeout=60,
            env=dict(os.environ, SHOAL_TOKEN=n2.api_token, SHOAL_CA=n2.ca_file),
        )
    )
    must(shoal("config", "create", "app.conf", str(config_file), addr=addr))
    must(shoal("network", "create", "appnet", addr=addr))
    # A rotated gossip key stays with the old cluster: the new one gossips under its own.
    must(shoal("cluster", "rotate-gossip-key", "--grace", "0", addr=addr))
    must(
        shoal(
            "service",
            "create",
            "--name",
            "web",
            "--replicas",
            "3",
            "--secret",
            "dbpw",
            "process",
            "sh",
            "-c",
            READER,
            addr=addr,
        )
    )

    async def spread() -> list[dict]:
        running = live(await tasks_of(cluster, "web"))
        return running if len({t["node_id"] for t in running}) == 3 else []

    before = {t["id"]: t["node_id"] for t in await wait_for(spread, 60, "3 tasks, one per node")}
    ids_before = {n.name: load(n.data_dir).identity.node_id for n in cluster.nodes}
    pids_before = {n.name: pids(n) for n in cluster.nodes}
    old_token = cluster.token
    recovery_key = must(node_cli("cluster", "recovery-key", "--data-dir", n2.data_dir)).strip()
    assert ClusterKeys.from_recovery_key(recovery_key).cluster_id == ids_cluster(n2)

    async def kept() -> list[str]:
        return backup.kept(n3.data_dir)

    await wait_for(kept, 20, "n3 to keep a snapshot of its own")
    assert oct(os.stat(os.path.join(n3.data_dir, "snapshots")).st_mode & 0o777) == "0o700"
    doctor = node_cli("node", "doctor", "--data-dir", n3.data_dir)
    assert doctor.returncode == 0 and "sha256 matches" in doctor.stdout, doctor.stdout

    snapshot = str(tmp_path / "backup.snap")
    saved = subprocess.run(
        [sys.executable, "-m", "node", "cluster", "snapshot", "save", snapshot, "--addr", addr],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ, SHOAL_TOKEN=n2.api_token, SHOAL_CA=n2.ca_file),
    )
    assert saved.returncode == 0, saved.stderr
    assert oct(os.stat(snapshot).st_mode & 0o777) == "0o600"
    inspected = json.loads(must(node_cli("cluster", "snapshot", "inspect", snapshot, "-o", "json")))
    assert inspected["checksum"] == "ok" and inspected["format"] == FORMAT
    assert inspected["counts"] == {
        "services": 1,
        "tasks": 3,
        "secrets": 1,
        "configs": 1,
        "networks": 1,
        "nodes": 3,
    }
    with open(snapshot, "rb") as f:
        assert SECRET not in f.read()  # sealed, as in the state

    stop_all(cluster.nodes)
    for node in cluster.nodes:
        for name in CLUSTER_STATE:
            path = os.path.join(node.data_dir, name)
            shutil.rmtree(path) if os.path.isdir(path) else os.path.exists(path) and os.unlink(path)
    assert all(alive(pid) for each in pids_before.values() for pid in each.values())
    marks = {t: len(output_of(n, t)) for n in cluster.nodes for t in pids_before[n.name]}

    # Refused: without the old cluster's recovery key, or with another cluster's.
    wrong = ClusterKeys.generate().recovery_key
    for flags in (("--restore", snapshot), ("--restore", snapshot, "--recovery-key", wrong)):
        refused = node_cli("node", "start", "--data-dir", n1.data_dir, *flags)
        assert refused.returncode == 2 and "--recovery-key" in refused.stderr, refused.stderr

    n1.start(also=("--restore", snapshot), env={"SHOAL_RECOVERY_KEY": recovery_key})
    await wait_for(lambda: cluster._leader_known(0), 30, "the restored node to lead")
    with open(n1.token_path) as f:
        cluster.token = f.read().strip()
    # A new cluster: another id, another CA (the old one's key is the old cluster's).
    assert ids_cluster(n1) != ClusterKeys.from_recovery_key(recovery_key).cluster_id
    assert JoinToken.parse(cluster.token).ca_digest != JoinToken.parse(old_token).ca_digest
    nodes = {n["name"]: n for n in await cluster.get(0, "/v1/nodes")}
    assert nodes["n1"]["status"] == "ready" and nodes["n1"]["role"] == "voter"
    assert {nodes[name]["status"] for name in ("n2", "n3")} == {"joining"}  # not back yet

    for node in (n2, n3):
        await cluster.add(node)

    async def all_back() -> bool:
        listed = await cluster.get(0, "/v1/nodes")
        return all(n["status"] == "ready" for n in listed) and len(listed) == 3

    await wait_for(all_back, 60, "the old nodes to rejoin")
    ring = await cluster.get(0, "/v1/cluster/gossip-keys")
    assert [(k["id"], k["derived_from_cluster_secret"]) for k in ring["keys"]] == [
        (key_id(load(n1.data_dir).identity.keys.secret), True)
    ]
    assert {n.name: load(n.data_dir).identity.node_id for n in cluster.nodes} == ids_before
    tasks = await tasks_of(cluster, "web")
    assert {t["id"]: t["node_id"] for t in live(tasks)} == before
    assert len([t for t in tasks if t["desired"] == "running"]) == 3
    assert {n.name: pids(n) for n in cluster.nodes} == pids_before  # adopted, none started
    assert all(alive(pid) for each in pids_before.values() for pid in each.values())
    assert [c["name"] for c in await cluster.get(1, "/v1/configs")] == ["app.conf"]
    assert [n["name"] for n in await cluster.get(2, "/v1/networks")] == ["appnet"]

    async def still_reading() -> bool:  # the adopted tasks read their secret after it all
        return all(
            SECRET_HASH in output_of(n, t)[marks[t] :]
            for n in cluster.nodes
            for t in pids_before[n.name]
        )

    await wait_for(still_reading, 20, "the adopted tasks to read their secret")
    must(shoal("service", "scale", "web=4", addr=n3.api))

    async def new_task_reads() -> bool:
        fresh = [t for t in live(await tasks_of(cluster, "web")) if t["id"] not in before]
        holder = next(
            (
                n
                for n in cluster.nodes
                for t in fresh
                if load(n.data_dir).identity.node_id == t["node_id"]
            ),
            None,
        )
        return bool(fresh) and SECRET_HASH in output_of(holder, fresh[0]["id"])

    await wait_for(new_task_reads, 30, "a new task to read the secret sealed anew")


async def test_force_new_cluster_on_the_last_voter_keeps_every_write(fresh, tmp_path):
    cluster = fresh(3)
    await cluster.start()
    n1, n2, n3 = cluster.nodes
    content = tmp_path / "c.conf"
    content.write_text("x")

    async def three_voters() -> bool:
        return len((await cluster.get(0, "/v1/cluster"))["voters"]) == 3

    await wait_for(three_voters, 60, "3 voters")
    written = [f"c{i}" for i in range(12)]
    for i, name in enumerate(written):  # acknowledged, through every node
        must(shoal("config", "create", name, str(content), addr=cluster.nodes[i % 3].api))
    n2.kill9()
    n3.kill9()

    async def no_leader() -> bool:
        return (await cluster.get(0, "/v1/cluster?stale=1"))["leader"] is None

    await wait_for(no_leader, 30, "the survivor to find no quorum")
    refused = shoal("config", "create", "lost", str(content), addr=n1.api)
    assert refused.returncode != 0  # no quorum, and nothing forces one without the flag

    n1.stop()
    n1.start(also=("--force-new-cluster",))
    await wait_for(lambda: cluster._leader_known(0), 30, "the survivor to lead alone")
    names = sorted(c["name"] for c in await cluster.get(0, "/v1/configs"))
    assert names == sorted(written)
    status = {n["name"]: (n["role"], n["status"]) for n in await cluster.get(0, "/v1/nodes")}
    assert status == {"n1": ("voter", "ready"), "n2": ("member", "down"), "n3": ("member", "down")}

    n4, n5 = (NodeProc(i, cluster.block, str(tmp_path), list(EQUAL_PROCESS_NODES)) for i in (4, 5))
    cluster.nodes += [n4, n5]
    for node in (n4, n5):
        await cluster.add(node)
    for gone in ("n2", "n3"):
        must(shoal("node", "rm", gone, addr=n4.api))
    await wait_for(three_voters, 60, "n4 and n5 to become voters")
    must(shoal("config", "create", "after", str(content), addr=n5.api))
    names = sorted(c["name"] for c in await cluster.get(3, "/v1/configs"))
    assert names == sorted(written + ["after"])

    # The flag left on by mistake, beside a live quorum, would split the cluster: refused.
    n1.stop()

    async def led_elsewhere() -> bool:
        leader = (await cluster.get(3, "/v1/cluster"))["leader"]
        return leader is not None and leader["name"] != "n1"

    await wait_for(led_elsewhere, 30, "n4 and n5 to elect a leader")
    again = node_cli("node", "start", "--data-dir", n1.data_dir, "--force-new-cluster")
    assert again.returncode == 2 and "the cluster has a leader" in again.stderr, again.stderr


async def test_a_foreign_newer_or_damaged_data_dir_is_refused(fresh, tmp_path):
    cluster = fresh(1)
    await cluster.start()
    node = cluster.nodes[0]
    data_dir = node.data_dir
    node.stop()

    def start(*flags: str) -> subprocess.CompletedProcess:
        return node_cli("node", "start", "--data-dir", data_dir, *flags)

    def refused_with(done: subprocess.CompletedProcess, words: str) -> None:
        assert done.returncode == 2, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and words in lines[0], done.stderr

    other = ClusterKeys.generate()
    own = load(data_dir).identity.cluster_id
    refused_with(
        start("--join", "127.0.0.1:1", "--token", str(other.join_token("ab" * 32, 0))),
        f"belongs to cluster {own}, and --token pins a CA this node does not trust",
    )
    refused_with(
        start("--restore", str(tmp_path / "x.snap"), "--recovery-key", other.recovery_key),
        "--restore needs a fresh data dir",
    )
    refused_with(
        node_cli("node", "start", "--data-dir", str(tmp_path / "empty"), "--force-new-cluster"),
        "holds no node",
    )

    garbage = tmp_path / "garbage.snap"
    garbage.write_bytes(b"SHOALSNP\x00\x00\x00\x02{}")
    inspected = node_cli("cluster", "snapshot", "inspect", str(garbage))
    assert inspected.returncode == 1 and "header.format" in inspected.stderr, inspected.stderr

    config_path = os.path.join(data_dir, "node.json")
    with open(config_path) as f:
        original = f.read()
    with open(config_path, "w") as f:
        f.write(original.replace('"data_dir_format": 1', '"data_dir_format": 7'))
    refused_with(start(), "(data dir format 7), newer than this Shoal")
    with open(config_path, "w") as f:
        f.write(original)

    assert node_cli("node", "doctor", "--data-dir", data_dir).returncode == 0
    journal = os.path.join(data_dir, "raft", "voter.journal")
    with open(journal, "r+b") as f:
        f.seek(44)  # the first record's index, past its size
        f.write(b"\x07" * 8)
    refused_with(start(), "the Raft log does not read")
    doctor = node_cli("node", "doctor", "--data-dir", data_dir)
    assert doctor.returncode == 1 and "FAIL raft log" in doctor.stdout, doctor.stdout
