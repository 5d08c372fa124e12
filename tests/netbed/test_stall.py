"""A stalled thread really stops while the process's other threads go on (needs root and
cgroup v1's freezer)."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from tests.netbed.stall import ThreadStall, unsupported
from tests.support import unavailable

# An event loop in the main thread and a plain thread, each printing its ticks.
PROGRAM = """
import asyncio, sys, threading, time
def other():
    while True:
        print("thread", flush=True); time.sleep(0.05)
threading.Thread(target=other, daemon=True).start()
async def loop():
    while True:
        print("loop", flush=True); await asyncio.sleep(0.05)
asyncio.run(loop())
"""


@pytest.fixture
def ticking(tmp_path):
    if why := unsupported():
        unavailable(why)
    out = tmp_path / "ticks"
    with open(out, "w") as sink:
        proc = subprocess.Popen([sys.executable, "-c", PROGRAM], stdout=sink)
    time.sleep(0.5)
    yield proc, out
    proc.kill()
    proc.wait()


def _ticks_during(out, seconds: float) -> dict[str, int]:
    before = out.read_text().split()
    time.sleep(seconds)
    after = out.read_text().split()[len(before) :]
    return {who: after.count(who) for who in ("loop", "thread")}


def test_the_loop_stops_while_the_other_thread_runs_and_resumes_after(ticking):
    proc, out = ticking
    with ThreadStall(proc.pid) as stall:
        assert stall.cgroup.exists()
        stalled = _ticks_during(out, 1.0)
    assert stalled["loop"] == 0 and stalled["thread"] >= 10, stalled
    assert not stall.cgroup.exists(), "the stall's cgroup is removed"
    resumed = _ticks_during(out, 0.5)
    assert resumed["loop"] >= 5, resumed
