"""What the process driver reads from /proc: identity, process groups, cpu and memory use.

A pid alone does not name a process: pids are reused. A pid together with its start time
(field 22 of /proc/<pid>/stat, clock ticks since boot) does, which is what makes re-adopting
a process after an agent restart safe.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True, slots=True)
class ProcStat:
    pid: int
    state: str
    pgrp: int
    utime: int
    stime: int
    start_ticks: int
    rss_pages: int

    @property
    def alive(self) -> bool:
        # Z: exited, not yet reaped; X: dead.
        return self.state not in ("Z", "X")


def parse_stat(text: str) -> ProcStat:
    """One /proc/<pid>/stat line. The command name (field 2) may hold spaces and
    parentheses, so the fields are counted from the last ')'."""
    pid, _, _ = text.partition(" (")
    fields = text[text.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state) of proc(5).
    return ProcStat(
        pid=int(pid),
        state=fields[0],
        pgrp=int(fields[2]),
        utime=int(fields[11]),
        stime=int(fields[12]),
        start_ticks=int(fields[19]),
        rss_pages=int(fields[21]),
    )


def read_stat(pid: int) -> ProcStat | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return parse_stat(f.read())
    except (FileNotFoundError, ProcessLookupError):
        return None


def is_running(pid: int, start_ticks: int) -> bool:
    """The process that had `start_ticks` is still `pid` and has not exited."""
    stat = read_stat(pid)
    return stat is not None and stat.start_ticks == start_ticks and stat.alive


def group_members(pgid: int) -> list[ProcStat]:
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = read_stat(int(entry))
            if stat is not None and stat.pgrp == pgid and stat.alive:
                members.append(stat)
    return members


def remaining_in_group(pid: int, start_ticks: int) -> list[ProcStat]:
    """The live members of the group that process (`pid`, `start_ticks`) led; none when `pid`
    now names another process, since the group with that id may then be someone else's."""
    leader = read_stat(pid)
    if leader is not None and leader.start_ticks != start_ticks:
        return []
    return group_members(pid)


async def wait_for_exit(pid: int, start_ticks: int) -> None:
    """Return when the process ends. Works for processes that are not our children (adopted
    after an agent restart): a pidfd becomes readable when its process exits."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        # Checked after opening: the pidfd now pins this very process, whatever reuses pids.
        if not is_running(pid, start_ticks):
            return
        loop = asyncio.get_running_loop()
        exited = loop.create_future()
        loop.add_reader(fd, lambda: exited.done() or exited.set_result(None))
        try:
            await exited
        finally:
            loop.remove_reader(fd)
    finally:
        os.close(fd)
