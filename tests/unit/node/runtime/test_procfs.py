"""Reading process identity from /proc, on real processes."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

from hypothesis import given
from hypothesis import strategies as st

from node.runtime import procfs


@given(st.text(alphabet=st.characters(blacklist_characters="\n\x00"), max_size=15))
def test_parse_stat_survives_any_command_name(comm):
    line = (
        f"4242 ({comm}) S 1 4240 4240 0 -1 4194560 100 0 0 0 17 5 0 0 20 0 1 0 987654 "
        f"12345678 321 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n"
    )
    stat = procfs.parse_stat(line)
    assert (
        stat.pid,
        stat.state,
        stat.pgrp,
        stat.utime,
        stat.stime,
        stat.start_ticks,
        stat.rss_pages,
    ) == (4242, "S", 4240, 17, 5, 987654, 321)


def test_own_process_is_running_and_a_wrong_start_time_is_not():
    me = procfs.read_stat(os.getpid())
    assert me is not None and me.alive
    assert procfs.is_running(os.getpid(), me.start_ticks)
    assert not procfs.is_running(os.getpid(), me.start_ticks + 1)  # a reused pid
    assert procfs.read_stat(2**22 + 1) is None  # above pid_max: never a process


def test_group_members_lists_a_new_session():
    child = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True
    )
    try:
        assert [m.pid for m in procfs.group_members(child.pid)] == [child.pid]
    finally:
        child.kill()
        child.wait()
    assert procfs.group_members(child.pid) == []


async def test_wait_for_exit_wakes_when_the_process_ends():
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
    )
    ticks = procfs.read_stat(child.pid).start_ticks
    waiter = asyncio.ensure_future(procfs.wait_for_exit(child.pid, ticks))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    child.stdin.close()
    await asyncio.wait_for(waiter, 30)
    assert child.wait() == 0
    # Gone (or never that process): returns at once.
    await asyncio.wait_for(procfs.wait_for_exit(child.pid, ticks), 5)
