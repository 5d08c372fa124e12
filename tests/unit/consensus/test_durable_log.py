"""Durable writes: an entry is fdatasynced on a majority (the leader included) before the
leader applies it and so before the write is acknowledged, concurrent writes share syncs,
and a restarted node has every acknowledged write."""

from __future__ import annotations

import asyncio
import os

import consensus  # noqa: F401  (registers commands and tables)
import consensus.raft as raft_module
from consensus import durable_log
from consensus.model import Node
from consensus.nodes import RegisterNode, nodes
from consensus.raft import RaftNode, RaftTuning
from node.devcluster.localcluster import wait_for
from tests.unit.consensus.test_raft_changes import free_port
from tests.unit.consensus.test_raft_snapshot import _compacted_voter, _joiner

WRITES = 60


def _record(i: int) -> RegisterNode:
    return RegisterNode(
        Node(
            id=f"id{i}",
            name=f"n{i}",
            address="127.0.0.1",
            api_port=7420,
            raft_port=7421,
            gossip_port=7422,
        )
    )


async def _leader(made: list[RaftNode]) -> RaftNode:
    async def found():
        return next((n for n in made if n.is_leader() and n._committed_in_term()), None)

    return await wait_for(found, timeout=20, what="a leader")


async def test_a_write_is_on_disk_on_a_majority_before_it_is_acknowledged(three, monkeypatch):
    at_apply: list[tuple[int, int, bool]] = []
    forgive = raft_module._forgive_busy_time

    def instrumented(syncobj, busy):  # runs in apply, just before the leader's callback
        if syncobj is not None and syncobj._isLeader():
            index = syncobj.raftLastApplied + 1
            durable_on = [n for n in three if n.durable and n.durable.synced_index >= index]
            at_apply.append((index, len(durable_on), any(n.is_leader() for n in durable_on)))
        forgive(syncobj, busy)

    monkeypatch.setattr(raft_module, "_forgive_busy_time", instrumented)
    leader = await _leader(three)
    syncs_before = leader.durable.syncs
    results = await asyncio.gather(*(leader.propose(_record(i)) for i in range(WRITES)))
    assert len(results) == WRITES  # each one committed and answered
    assert len(at_apply) >= WRITES
    late = [entry for entry in at_apply if entry[1] < 2 or not entry[2]]
    assert not late, f"applied before a majority (leader included) synced: {late[:5]}"
    # Group commit: the concurrent writes shared the leader's syncs.
    assert leader.durable.syncs - syncs_before < WRITES


async def test_the_leader_syncs_an_entry_before_any_follower_answers_for_it(three):
    """The leader's own fdatasync overlaps the round trip: by the time a follower says it
    holds an entry, the leader's copy is already on disk (before this, the leader synced only
    once the answers had moved its commit index, a sync's time after the round trip)."""
    leader = await _leader(three)
    transport = getattr(leader._syncobj, raft_module._TRANSPORT)
    received = transport._onMessageReceivedCallback
    late: list[tuple[int, int]] = []
    answers = 0

    def watched(node, message):  # on the leader's Raft thread
        nonlocal answers
        if isinstance(message, dict) and message.get("type") == "next_node_idx":
            acked = message["next_node_idx"] - 1
            if acked > leader.durable.synced_index:
                late.append((acked, leader.durable.synced_index))
            answers += 1
        received(node, message)

    transport.setOnMessageReceivedCallback(watched)
    for i in range(10):
        await leader.propose(_record(i))
    await asyncio.gather(*(leader.propose(_record(i)) for i in range(10, WRITES)))
    assert answers >= 20
    assert not late, f"followers answered for entries the leader had not synced: {late[:5]}"


async def test_the_term_and_vote_file_is_on_disk_before_it_replaces_the_last(tmp_path, monkeypatch):
    """pysyncobj rewrites `<journal>.meta` (term, vote) as a new file renamed into place;
    an unsynced one renamed over the last can be empty after a power cut."""
    synced: set[str] = set()
    renamed_unsynced: list[str] = []
    fdatasync, rename, replace = os.fdatasync, os.rename, os.replace

    def recording_sync(fd: int) -> None:
        fdatasync(fd)
        synced.add(os.readlink(f"/proc/self/fd/{fd}"))

    def checked(move):
        def moved(src, dst, *args, **kwargs):
            if str(dst).endswith(".meta"):
                if os.path.realpath(src) not in synced:
                    renamed_unsynced.append(str(src))
                synced.discard(os.path.realpath(src))
            return move(src, dst, *args, **kwargs)

        return moved

    monkeypatch.setattr(os, "fdatasync", recording_sync)
    monkeypatch.setattr(os, "rename", checked(rename))
    monkeypatch.setattr(os, "replace", checked(replace))
    raft = RaftNode(data_dir=str(tmp_path), address=f"127.0.0.1:{free_port()}", password="t")
    raft.start("voter", [])
    try:
        await _leader([raft])  # an election: a new term and a vote stored
        for i in range(3):
            await raft.propose(_record(i))
        await asyncio.sleep(1.5)  # pysyncobj's once-a-second rewrite (the commit index moved)
        meta = [p for p in os.listdir(tmp_path / "raft") if p.endswith(".meta")]
    finally:
        raft.stop()
    assert meta, "no meta file was written"
    assert not renamed_unsynced, f"renamed into place unsynced: {renamed_unsynced}"


async def test_without_durability_nothing_is_synced(tmp_path):
    raft = RaftNode(
        data_dir=str(tmp_path),
        address=f"127.0.0.1:{free_port()}",
        password="t",
        tuning=RaftTuning(durable=False),
    )
    raft.start("voter", [])
    try:
        assert raft.durable is None
    finally:
        raft.stop()


async def test_a_restarted_voter_has_every_acknowledged_write(tmp_path):
    address = f"127.0.0.1:{free_port()}"
    raft = RaftNode(data_dir=str(tmp_path), address=address, password="t")
    raft.start("voter", [])
    await _leader([raft])
    for i in range(20):
        await raft.propose(_record(i))
    assert raft.durable.synced_index >= raft.status().commit_index
    raft.stop()
    again = RaftNode(data_dir=str(tmp_path), address=address, password="t")
    again.start("voter", [])
    try:
        await again.wait_caught_up()
        with again.view() as state:
            assert state.applied == 20
    finally:
        again.stop()


async def test_a_snapshot_from_the_leader_is_on_disk_before_it_is_acknowledged(
    tmp_path, monkeypatch
):
    """A voter that joins after compaction gets the leader's snapshot: pysyncobj writes it
    unsynced, clears the journal for it and acknowledges it, then every entry after it,
    fdatasynced into that journal. Until the snapshot is synced too, a power cut could leave
    the journal with the entries after it and no snapshot before them: the voter's state
    empty while its log is as long as anyone's (and it may lead)."""
    leader, tuning = await _compacted_voter(tmp_path)
    joiner = _joiner(tmp_path, tuning)
    dump = os.path.join(tmp_path, "joiner", "raft", "voter.dump")
    synced: list[str] = []
    fsync_path = durable_log._fsync_path

    def recording(path: str, **kwargs) -> None:
        synced.append(path)
        fsync_path(path, **kwargs)

    monkeypatch.setattr(durable_log, "_fsync_path", recording)
    unsynced_acks: list[dict] = []
    try:
        adding = asyncio.ensure_future(leader.add_voter(joiner.address, timeout=15))
        joiner.start("voter", [leader.address])
        transport = getattr(joiner._syncobj, raft_module._TRANSPORT)
        send = transport.send

        def watching(node, message):  # on the joiner's Raft thread
            acks = message.get("type") == "next_node_idx"
            if acks and os.path.exists(dump) and dump not in synced:
                unsynced_acks.append(message)
            return send(node, message)

        transport.send = watching
        await adding
        await asyncio.wait_for(joiner.wait_caught_up(), 15)
        with joiner.view() as state:
            assert len(nodes(state)) == 120, "the state came by the snapshot"
        assert not unsynced_acks, f"acknowledged before its snapshot was synced: {unsynced_acks}"
    finally:
        joiner.stop()
        leader.stop()
