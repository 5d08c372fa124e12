"""Stall one thread of a live process from outside: a process's event loop (its main thread)
stops while its other threads (a Raft thread) keep running, as when the loop is stuck in a
blocking call. SIGSTOP cannot do this: it stops every thread.

    with ThreadStall(pid) as stall:     # pid's main thread frozen, its other threads run
        ...
    # thawed and back in its cgroup

How: cgroup v1's freezer places a single thread (a TID written to `tasks`) in a cgroup of its
own and freezes that cgroup. A Python thread frozen while it holds the interpreter lock would
stop every other Python thread too, so the thread is frozen only where it waits in the
selector (epoll_wait, which runs without the lock): it is frozen, its syscall read from
/proc, and thawed and frozen again at another moment until it was caught there. Under cgroup
v1 a frozen thread does not die even of SIGKILL until it is thawed: always thaw (the `with`
block, or Faults.heal).
"""

from __future__ import annotations

import os
import platform
import random
import time
from pathlib import Path

FREEZER = Path("/sys/fs/cgroup/freezer")
# The selector's waits (epoll_wait, epoll_pwait, epoll_pwait2) by machine.
_EPOLL_WAITS = {"x86_64": {232, 281, 441}, "aarch64": {22, 441}}
ATTEMPTS = 500


def unsupported() -> str | None:
    """Why a thread cannot be stalled here, or None."""
    if not (FREEZER / "tasks").exists():
        return "no cgroup v1 freezer (a single thread can be frozen only there)"
    if platform.machine() not in _EPOLL_WAITS:
        return f"epoll syscall numbers unknown on {platform.machine()}"
    if os.geteuid() != 0:
        return "freezing a thread needs root"
    return None


class ThreadStall:
    """Freezes the main thread of `pid` (its event loop) caught in its selector's wait."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.cgroup = FREEZER / f"shoal-stall-{pid}"
        self._home = self._cgroup_of(pid)

    @staticmethod
    def _cgroup_of(tid: int) -> Path:
        for line in Path(f"/proc/{tid}/task/{tid}/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            if "freezer" in controllers.split(","):
                return FREEZER / path.lstrip("/")
        raise RuntimeError(f"thread {tid} is in no freezer cgroup")

    def _set(self, state: str, timeout: float = 5.0) -> None:
        (self.cgroup / "freezer.state").write_text(state)
        deadline = time.monotonic() + timeout
        while (self.cgroup / "freezer.state").read_text().strip() != state:
            if time.monotonic() > deadline:
                raise RuntimeError(f"thread {self.pid} not {state} within {timeout:g} s")
            time.sleep(0.001)

    def _syscall(self) -> int:
        """The syscall the frozen thread was in; -1 when frozen outside any (running code)."""
        return int(Path(f"/proc/{self.pid}/task/{self.pid}/syscall").read_text().split()[0])

    def freeze(self) -> None:
        if why := unsupported():
            raise RuntimeError(why)
        waits = _EPOLL_WAITS[platform.machine()]
        self.cgroup.mkdir(exist_ok=True)
        (self.cgroup / "tasks").write_text(str(self.pid))
        for _ in range(ATTEMPTS):
            self._set("FROZEN")
            if self._syscall() in waits:
                return
            self._set("THAWED")
            time.sleep(random.uniform(0.001, 0.01))
        self.thaw()
        raise RuntimeError(
            f"thread {self.pid} was never caught in its selector in {ATTEMPTS} tries "
            f"(its event loop is always busy)"
        )

    def thaw(self) -> None:
        """Thaw, move the thread back where it was and remove the cgroup (a process that
        exited meanwhile left nothing to move)."""
        if not self.cgroup.exists():
            return
        self._set("THAWED")
        if Path(f"/proc/{self.pid}").exists():
            (self._home / "tasks").write_text(str(self.pid))
        self.cgroup.rmdir()

    def __enter__(self) -> ThreadStall:
        self.freeze()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.thaw()
