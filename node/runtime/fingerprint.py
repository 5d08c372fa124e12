"""The capacity of this host as the process runtime offers it: cpu and memory, cgroup-aware.

The pure part takes the texts of the files it needs; `host_fingerprint` reads them. Limits
of the cgroup the agent itself runs in win over the machine's totals: an agent in a container
with two CPUs and 1 GiB must not offer the host's 64 CPUs.
"""

from __future__ import annotations

import os

from node.runtime.model import NodeFingerprint

# cgroup v1 reports "no limit" as a huge number close to the largest page-aligned int64.
_UNLIMITED_MEMORY = 1 << 62


def meminfo_total(text: str) -> int:
    """MemTotal of /proc/meminfo in bytes."""
    for line in text.splitlines():
        if line.startswith("MemTotal:"):
            amount, _, unit = line.split(":", 1)[1].strip().partition(" ")
            return int(amount) * (1024 if unit.strip().lower() == "kb" else 1)
    raise ValueError("MemTotal: missing from /proc/meminfo")


def cgroup_paths(text: str) -> dict[str, str]:
    """/proc/self/cgroup -> controller name -> the group's path (v2's unified entry as "")."""
    paths = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            for controller in parts[1].split(","):
                paths[controller] = parts[2]
    return paths


def cpu_millis(cpus: int, quota_us: int | None, period_us: int | None) -> int:
    if quota_us and quota_us > 0 and period_us:
        return min(cpus * 1000, quota_us * 1000 // period_us)
    return cpus * 1000


def memory_bytes(total: int, cgroup_limit: int | None) -> int:
    if cgroup_limit and 0 < cgroup_limit < _UNLIMITED_MEMORY:
        return min(total, cgroup_limit)
    return total


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def _read_int(path: str) -> int | None:
    text = _read(path)
    try:
        return int(text.split()[0]) if text else None
    except ValueError:  # cgroup v2 writes "max" for no limit
        return None


def _own_group_file(
    root: str, paths: dict[str, str], controller: str, mounts: tuple[str, ...], name: str
) -> str | None:
    group = paths.get(controller)
    if group is None:
        return None
    for mount in mounts:
        path = os.path.join(root, mount, group.lstrip("/"), name)
        if os.path.exists(path):
            return path
    return None


def host_fingerprint(runtime: str, root: str = "/sys/fs/cgroup") -> NodeFingerprint:
    cpus = len(os.sched_getaffinity(0))
    paths = cgroup_paths(_read("/proc/self/cgroup") or "")
    quota = _own_group_file(root, paths, "cpu", ("cpu,cpuacct", "cpu"), "cpu.cfs_quota_us")
    period = _own_group_file(root, paths, "cpu", ("cpu,cpuacct", "cpu"), "cpu.cfs_period_us")
    limit = _own_group_file(root, paths, "memory", ("memory",), "memory.limit_in_bytes")
    total = meminfo_total(_read("/proc/meminfo") or "")
    return NodeFingerprint(
        cpu_millis=cpu_millis(
            cpus, _read_int(quota) if quota else None, _read_int(period) if period else None
        ),
        memory_bytes=memory_bytes(total, _read_int(limit) if limit else None),
        runtime=runtime,
        details={"cpus": str(cpus), "memory_total": str(total), "kernel": os.uname().release},
    )
