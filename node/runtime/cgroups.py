"""Memory and cpu limits for plain processes through cgroup v1 (<root>/memory and cpu).

Each limited task gets `shoal/<task_id>` groups under the controllers it needs. The process
joins them itself before it execs the task's command (`join_command`), so not even its first
child escapes the limit. Where the hierarchy is missing or not writable (no root, cgroup v2
only), `problem()` says why and the driver runs tasks without limits, saying so.
"""

from __future__ import annotations

import errno
import logging
import os

log = logging.getLogger(__name__)

# The cfs period the quota is a share of (the kernel's default, as Docker uses).
CFS_PERIOD_US = 100_000
# The smallest quota the kernel accepts (1 ms per period: 10 millicores).
MIN_CFS_QUOTA_US = 1_000

# Joins every cgroup.procs file given before `--`, then execs the rest: `$$` is the pid the
# driver spawned, and exec keeps it. 125 is the exit status of a runtime failure (as docker run).
_JOIN_SCRIPT = 'while [ "$1" != -- ]; do echo $$ > "$1" || exit 125; shift; done; shift; exec "$@"'


def join_command(procs_files: tuple[str, ...], argv: tuple[str, ...]) -> tuple[str, ...]:
    if not procs_files:
        return argv
    return ("/bin/sh", "-c", _JOIN_SCRIPT, "shoal-cgroup-join", *procs_files, "--", *argv)


class CgroupsV1:
    def __init__(self, root: str = "/sys/fs/cgroup", parent: str = "shoal") -> None:
        self._root = root
        self._parent = parent

    def _controller(self, name: str) -> str | None:
        # cpu and cpuacct are often co-mounted as "cpu,cpuacct" (with a "cpu" symlink).
        for mount in (name,) if name != "cpu" else ("cpu,cpuacct", "cpu"):
            path = os.path.join(self._root, mount)
            if os.path.isdir(path):
                return path
        return None

    def problem(self) -> str | None:
        """None when limits can be enforced, otherwise why not."""
        for name in ("memory", "cpu"):
            path = self._controller(name)
            if path is None:
                return f"no cgroup v1 {name} controller under {self._root}"
            try:
                os.makedirs(os.path.join(path, self._parent), exist_ok=True)
            except OSError as exc:
                return f"cannot create cgroups under {path}: {exc.strerror}"
        return None

    def _group(self, controller: str, task_id: str) -> str | None:
        path = self._controller(controller)
        return None if path is None else os.path.join(path, self._parent, task_id)

    def _make(self, controller: str, task_id: str) -> str:
        group = self._group(controller, task_id)
        if group is None:
            raise OSError(errno.ENOENT, f"no cgroup v1 {controller} controller under {self._root}")
        os.makedirs(group, exist_ok=True)
        return group

    @staticmethod
    def _write(group: str, *settings: tuple[str, int]) -> None:
        for name, value in settings:
            with open(os.path.join(group, name), "w") as f:
                f.write(str(value))

    def create(self, task_id: str, memory_bytes: int, cpu_millis: int) -> tuple[str, ...]:
        """Make the groups for the limits that are set; the cgroup.procs files to join."""
        procs = []
        if memory_bytes:
            group = self._make("memory", task_id)
            limit = ("memory.limit_in_bytes", memory_bytes)
            if os.path.exists(os.path.join(group, "memory.memsw.limit_in_bytes")):
                # Swap counted in, or the limit only moves the excess to swap. The kernel
                # keeps memsw >= memory at every step, so the order depends on the old values.
                memsw = ("memory.memsw.limit_in_bytes", memory_bytes)
                try:
                    self._write(group, limit, memsw)
                except OSError:
                    self._write(group, memsw, limit)
            else:
                self._write(group, limit)
            procs.append(os.path.join(group, "cgroup.procs"))
        if cpu_millis:
            group = self._make("cpu", task_id)
            self._write(
                group,
                ("cpu.cfs_period_us", CFS_PERIOD_US),
                ("cpu.cfs_quota_us", max(MIN_CFS_QUOTA_US, cpu_millis * CFS_PERIOD_US // 1000)),
            )
            procs.append(os.path.join(group, "cgroup.procs"))
        return tuple(procs)

    def oom_killed(self, task_id: str) -> bool:
        """Whether the kernel killed a process of the task's memory group for want of memory."""
        group = self._group("memory", task_id)
        if group is None:
            return False
        try:
            with open(os.path.join(group, "memory.oom_control")) as f:
                lines = f.read().splitlines()
        except OSError:
            return False
        for line in lines:
            name, _, count = line.partition(" ")
            if name == "oom_kill":
                return count.strip() != "0"
        return False

    def remove(self, task_id: str) -> None:
        for controller in ("memory", "cpu"):
            group = self._group(controller, task_id)
            if group is None:
                continue
            try:
                os.rmdir(group)
            except FileNotFoundError:
                pass
            except OSError as exc:
                # EBUSY: a process is still inside; it is gone once the group's tasks end.
                log.warning("cannot remove cgroup %s: %s", group, exc.strerror)
