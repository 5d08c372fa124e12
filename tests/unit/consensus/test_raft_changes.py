"""RaftNode's change notices: a loop waiting for changes stops when it is cancelled, even
when the cancellation arrives together with a change (Python 3.11's asyncio.wait_for
swallowed it there, and a stopping node waited forever for its loops)."""

from __future__ import annotations

import asyncio
import socket

import pytest

from consensus.raft import RaftNode


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
async def raft(tmp_path):
    node = RaftNode(data_dir=str(tmp_path), address=f"127.0.0.1:{free_port()}", password="test")
    node.start("voter", [])
    yield node
    node.stop()


async def test_a_change_arriving_with_the_cancellation_does_not_keep_a_loop_alive(raft):
    async def control_loop() -> None:
        seen = -1
        while True:
            seen = await raft.wait_changed(seen, timeout=1.0)

    kept_running = []
    for turns in range(6):  # how far the change has got when the cancellation comes
        loop = asyncio.create_task(control_loop())
        for _ in range(3):  # let it settle into waiting
            await asyncio.sleep(0)
        raft._notify()  # what the Raft thread calls after an apply
        for _ in range(turns):
            await asyncio.sleep(0)
        loop.cancel()
        done, _ = await asyncio.wait([loop], timeout=5)
        if not (done and loop.cancelled()):
            kept_running.append(turns)
            loop.cancel()  # end it for good
    assert kept_running == [], "cancelled loops kept running"


def test_time_spent_applying_does_not_count_toward_an_election():
    # pysyncobj keeps the deadline private: this fails, rather than silently doing nothing,
    # should an upgrade rename it.
    from pysyncobj import SyncObj, SyncObjConf

    from consensus.raft import _forgive_busy_time

    follower = SyncObj(
        f"127.0.0.1:{free_port()}", [f"127.0.0.1:{free_port()}"], SyncObjConf(autoTick=False)
    )
    try:
        before = follower._SyncObj__raftElectionDeadline
        _forgive_busy_time(follower, 0.5)
        assert follower._SyncObj__raftElectionDeadline == before + 0.5
    finally:
        follower.destroy()


def test_importing_the_raft_adapter_leaves_socket_inet_ntop_working():
    """A canary for pysyncobj replacing socket.inet_ntop with a Windows-only function."""
    import socket

    import consensus.raft  # noqa: F401

    assert socket.inet_ntop(socket.AF_INET, b"\x0a\x00\x00\x01") == "10.0.0.1"
