"""Host capacity from /proc and cgroup files."""

from __future__ import annotations

import os

import pytest

from node.runtime.fingerprint import (
    cgroup_paths,
    cpu_millis,
    host_fingerprint,
    meminfo_total,
    memory_bytes,
)


def test_meminfo_total_in_bytes():
    assert meminfo_total("MemTotal:       24684096 kB\nMemFree: 1 kB\n") == 24684096 * 1024
    with pytest.raises(ValueError, match="MemTotal"):
        meminfo_total("MemFree: 1 kB\n")


def test_cgroup_paths_split_co_mounted_controllers():
    text = "4:memory:/a/b\n2:cpu,cpuacct:/c\n0::/unified\n"
    assert cgroup_paths(text) == {"memory": "/a/b", "cpu": "/c", "cpuacct": "/c", "": "/unified"}


@pytest.mark.parametrize(
    "cpus, quota, period, expected",
    [
        (4, None, None, 4000),
        (4, -1, 100000, 4000),
        (4, 150000, 100000, 1500),
        (2, 800000, 100000, 2000),  # a quota above the cpus there are gives no more
    ],
)
def test_cpu_millis_respects_a_quota(cpus, quota, period, expected):
    assert cpu_millis(cpus, quota, period) == expected


@pytest.mark.parametrize(
    "limit, expected",
    [(None, 8 << 30), (9223372036854771712, 8 << 30), (1 << 30, 1 << 30), (16 << 30, 8 << 30)],
)
def test_memory_respects_a_cgroup_limit(limit, expected):
    assert memory_bytes(8 << 30, limit) == expected


def test_host_fingerprint_of_this_machine():
    found = host_fingerprint("process")
    assert found.runtime == "process"
    assert 0 < found.cpu_millis <= len(os.sched_getaffinity(0)) * 1000
    with open("/proc/meminfo") as f:
        assert 0 < found.memory_bytes <= meminfo_total(f.read())
