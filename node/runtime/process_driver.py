"""The process runtime: tasks as plain host processes, where no Docker Engine is reachable.

A task runs `command + args` (its `image` must be empty or "process": this runtime has no
images) in its own session and process group, with the spec's environment plus PATH and the
port variables, in DATA_DIR/tasks/<task_id>/work, writing stdout and stderr to output.log.
Limits go through cgroup v1 where writable; elsewhere the task runs unlimited and a warning
says so. Tasks outlive the agent: a new driver on the same data dir re-adopts them from their
state files, checking pid and start time so that a reused pid is never mistaken for a task.

Exit statuses are known for processes this driver instance started; a task that ended while
no agent was its parent is reported failed with an unknown status.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from consensus.container import stop_signal_number
from node.runtime import procfs, task_files
from node.runtime.cgroups import CgroupsV1, join_command
from node.runtime.fingerprint import host_fingerprint
from node.runtime.health import CheckKind
from node.runtime.model import (
    NodeFingerprint,
    PublishedPort,
    RunSpec,
    TaskObservation,
    TaskStats,
    missing,
)
from node.runtime.mounts import (
    VOLUMES_DIR,
    MountError,
    host_bind_refused,
    prepare_mounts,
    process_mounts,
)
from node.runtime.process_logs import follow_log, read_log
from node.runtime.process_records import (
    LOG_FILE,
    WORK_DIR,
    TaskRecord,
    load_record,
    load_records,
    port_environment,
    publish,
    save_record,
    task_dir,
)
from node.runtime.task_user import TaskUser, node_user

log = logging.getLogger(__name__)

PROCESS_IMAGES = ("", "process")
# A task creates files as a program started from a shell would; the node's own umask (077)
# is for the node's files.
TASK_UMASK = 0o022


@dataclass(frozen=True, slots=True)
class _Launch:
    argv: tuple[str, ...]
    env: dict[str, str]
    cwd: str
    endpoints: tuple[PublishedPort, ...]
    log_path: str


def _exit_status(returncode: int) -> int:
    # Killed by signal N is reported as 128 + N, as shells and Docker do.
    return 128 - returncode if returncode < 0 else returncode


class ProcessDriver:
    name = "process"
    native_health_checks: frozenset[CheckKind] = frozenset()

    def __init__(
        self,
        data_dir: str,
        *,
        node_id: str = "",
        cgroups: CgroupsV1 | None = None,
        stats_window: float = 0.5,
        task_user: TaskUser | None = None,
        host_binds: bool = True,
    ) -> None:
        self._data_dir = os.path.abspath(data_dir)
        self._user = task_user or node_user()
        self.command_options = self._user.popen_options()
        self._host_binds = host_binds
        self._node_id = node_id
        self._cgroups = cgroups or CgroupsV1()
        self._stats_window = stats_window
        self._children: dict[str, subprocess.Popen] = {}
        # Tasks that never got a process: inspect must still say why.
        self._failures: dict[str, TaskObservation] = {}
        self._files_root = task_files.files_root(
            os.path.join(self._data_dir, "task-files"), node_id or self._data_dir
        )
        if self._user.switches:
            # A task reaches its own directory, volumes and files by their paths (a program
            # opens os.getcwd() + name): the node's directories on the way may be passed
            # through, never listed; what is in them is the node's alone (0600/0700) or the
            # task user's.
            for path in (
                self._data_dir,
                os.path.join(self._data_dir, "tasks"),
                os.path.join(self._data_dir, VOLUMES_DIR),
                self._files_root,
            ):
                os.makedirs(path, mode=0o711, exist_ok=True)
                os.chmod(path, 0o711)

    async def fingerprint(self) -> NodeFingerprint:
        def probe() -> NodeFingerprint:
            found = host_fingerprint(self.name)
            problem = self._cgroups.problem()
            limits = "cgroup v1" if problem is None else f"not enforced: {problem}"
            return NodeFingerprint(
                found.cpu_millis,
                found.memory_bytes,
                found.runtime,
                {**found.details, "limits": limits},
            )

        return await asyncio.to_thread(probe)

    def _fail(self, spec: RunSpec, error: str) -> TaskObservation:
        failed = TaskObservation(spec.task_id, "failed", spec.service, spec.slot, error=error)
        self._failures[spec.task_id] = failed
        return failed

    def _prepare(self, spec: RunSpec) -> _Launch:
        """Directories, host ports, environment and cgroups; raises OSError naming the problem."""
        argv = spec.command + spec.args
        self._check_mounts(spec)
        base = task_dir(self._data_dir, spec.task_id)
        cwd = os.path.join(base, WORK_DIR)
        os.makedirs(cwd, exist_ok=True)
        if self._user.switches:
            os.chmod(base, 0o711)
            self._user.give(cwd)
        env = {"PATH": os.environ.get("PATH", os.defpath), **spec.env}
        if (
            shutil.which(argv[0], path=env["PATH"]) is None
            and shutil.which(os.path.join(cwd, argv[0])) is None
        ):
            raise FileNotFoundError(f"command {argv[0]!r} not found (PATH={env['PATH']})")
        endpoints = publish(spec.advertise_address, spec.ports)
        env.update(port_environment(endpoints))
        planned = process_mounts(spec.mounts, self._data_dir, base)
        env.update(prepare_mounts(planned, cwd))
        self._user.give(*(m.path for m in planned if m.create))
        if spec.files:
            # The task's secrets and configs at their paths under SHOAL_FILES_DIR.
            files = task_files.task_files_dir(self._files_root, spec.task_id)
            task_files.write_files(files, spec.files)
            for root, _dirs, names in os.walk(files):
                self._user.give(root, *(os.path.join(root, n) for n in names))
            env.update(
                SHOAL_FILES_DIR=files,
                SHOAL_SECRETS_DIR=task_files.host_path(files, task_files.SECRETS_DIR),
            )
        procs: tuple[str, ...] = ()
        if spec.memory_bytes or spec.cpu_millis:
            problem = self._cgroups.problem()
            if problem is None:
                procs = self._cgroups.create(spec.task_id, spec.memory_bytes, spec.cpu_millis)
                self._user.give(*procs)  # the task's first step puts itself in its cgroups
            else:
                log.warning("task %s runs without its cpu/memory limits: %s", spec.task_id, problem)
        return _Launch(join_command(procs, argv), env, cwd, endpoints, os.path.join(base, LOG_FILE))

    def _check_mounts(self, spec: RunSpec) -> None:
        refused = host_bind_refused(spec.mounts, self._host_binds)
        if refused:
            raise MountError(refused)
        for i, mount in enumerate(spec.mounts):
            if mount.read_only:
                # No mount namespace here: the task would write through the "read-only" path.
                raise MountError(
                    f"mounts[{i}]: the process runtime cannot make {mount.target} "
                    "read-only; drop readonly, or run the service on a docker node"
                )

    def _spawn(self, launch: _Launch) -> subprocess.Popen:
        # Popen, not asyncio's subprocess: asyncio kills a still-running child when its
        # transport is closed, and tasks must outlive the agent that started them.
        with open(launch.log_path, "ab") as output:
            return subprocess.Popen(
                launch.argv,
                cwd=launch.cwd,
                env=launch.env,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                umask=TASK_UMASK,
                **self._user.popen_options(),
            )

    async def start(self, spec: RunSpec) -> TaskObservation:
        self._failures.pop(spec.task_id, None)
        if spec.image not in PROCESS_IMAGES:
            return self._fail(
                spec,
                f"image {spec.image!r}: the process runtime runs commands, "
                f"not images; give a command with no image (or image "
                f"'process'), or run the service on a docker node",
            )
        if not spec.command + spec.args:
            return self._fail(spec, "command: the process runtime needs a command to run")
        record = await asyncio.to_thread(load_record, self._data_dir, spec.task_id)
        if record is not None and procfs.is_running(record.pid, record.start_ticks):
            return await self._observe(record)
        try:
            launch = await asyncio.to_thread(self._prepare, spec)
            child = await asyncio.to_thread(self._spawn, launch)
        except OSError as exc:
            return self._fail(spec, f"cannot start: {exc}")
        stat = procfs.read_stat(child.pid)
        record = TaskRecord(
            spec.task_id,
            spec.service,
            spec.slot,
            child.pid,
            stat.start_ticks if stat else 0,
            time.time(),
            launch.endpoints,
            spec.owner_labels(self._node_id),
            spec.memory_bytes,
            stop_signal_number(spec.options.stop_signal or "SIGTERM"),
        )
        self._children[spec.task_id] = child
        await asyncio.to_thread(save_record, self._data_dir, record)
        return await self._observe(record)

    async def _observe(self, record: TaskRecord, *, stopped: bool = False) -> TaskObservation:
        seen = TaskObservation(
            record.task_id,
            "running",
            record.service,
            record.slot,
            endpoints=record.endpoints,
            started_at=record.started_at,
        )
        if procfs.is_running(record.pid, record.start_ticks):
            return seen
        child = self._children.get(record.task_id)
        if child is None:
            # Only a process's parent learns its exit status, and that was an earlier agent.
            ended = "stopped" if stopped else "ended"
            return TaskObservation(
                record.task_id,
                "failed",
                record.service,
                record.slot,
                started_at=record.started_at,
                error=f"{ended}; exit status unknown: started before the agent restarted",
            )
        status = _exit_status(await asyncio.to_thread(child.wait))
        if status == 0:
            return TaskObservation(
                record.task_id,
                "exited",
                record.service,
                record.slot,
                exit_code=0,
                started_at=record.started_at,
            )
        if status == 128 + signal.SIGKILL and self._cgroups.oom_killed(record.task_id):
            error = f"killed: out of memory (limit {record.memory_limit_bytes} bytes)"
        elif status > 128:
            error = f"killed by {signal.Signals(status - 128).name}"
        else:
            error = f"exited with status {status}"
        return TaskObservation(
            record.task_id,
            "failed",
            record.service,
            record.slot,
            exit_code=status,
            error=error,
            started_at=record.started_at,
        )

    async def _record(self, task_id: str) -> TaskRecord | None:
        return await asyncio.to_thread(load_record, self._data_dir, task_id)

    async def inspect(self, task_id: str) -> TaskObservation:
        record = await self._record(task_id)
        if record is None:
            return self._failures.get(task_id) or missing(task_id)
        return await self._observe(record)

    async def wait(self, task_id: str) -> TaskObservation:
        record = await self._record(task_id)
        if record is not None:
            await procfs.wait_for_exit(record.pid, record.start_ticks)
        return await self.inspect(task_id)

    def _signal(self, record: TaskRecord, sig: int) -> None:
        if procfs.is_running(record.pid, record.start_ticks):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(record.pid, sig)

    async def stop(self, task_id: str, grace: float) -> TaskObservation:
        record = await self._record(task_id)
        if record is None:
            return self._failures.get(task_id) or missing(task_id)
        self._signal(record, record.stop_signal)
        try:
            await asyncio.wait_for(procfs.wait_for_exit(record.pid, record.start_ticks), grace)
        except TimeoutError:
            self._signal(record, signal.SIGKILL)
            await procfs.wait_for_exit(record.pid, record.start_ticks)
        # What the task left behind in its group dies with it, as in a container. Members are
        # killed one by one: while they live no other group can take their group id.
        leftovers = await asyncio.to_thread(
            procfs.remaining_in_group, record.pid, record.start_ticks
        )
        for member in leftovers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(member.pid, signal.SIGKILL)
        return await self._observe(record, stopped=True)

    async def remove(self, task_id: str) -> None:
        self._failures.pop(task_id, None)
        if await self._record(task_id) is not None:
            await self.stop(task_id, 0)
        self._children.pop(task_id, None)
        await asyncio.to_thread(self._cgroups.remove, task_id)
        await asyncio.to_thread(shutil.rmtree, task_dir(self._data_dir, task_id), True)
        await asyncio.to_thread(
            task_files.remove_files, task_files.task_files_dir(self._files_root, task_id)
        )

    async def logs(
        self, task_id: str, *, follow: bool = False, tail: int | None = None
    ) -> AsyncIterator[bytes]:
        record = await self._record(task_id)
        if record is None:
            return
        path = os.path.join(task_dir(self._data_dir, task_id), LOG_FILE)
        if follow and procfs.is_running(record.pid, record.start_ticks):
            chunks = follow_log(path, record.pid, tail)
        else:
            chunks = read_log(path, tail)
        async with contextlib.aclosing(chunks):  # closing this stream closes the inner one
            async for chunk in chunks:
                yield chunk

    async def stats(self, task_id: str) -> TaskStats | None:
        record = await self._record(task_id)
        if record is None or not procfs.is_running(record.pid, record.start_ticks):
            return None
        # cpu use is a rate: two samples of the group's cpu time, a short window apart.
        before = await asyncio.to_thread(procfs.group_members, record.pid)
        began = time.monotonic()
        await asyncio.sleep(self._stats_window)
        after = await asyncio.to_thread(procfs.group_members, record.pid)
        elapsed = time.monotonic() - began
        ticks = sum(m.utime + m.stime for m in after) - sum(m.utime + m.stime for m in before)
        percent = max(0, ticks) / procfs.CLOCK_TICKS / elapsed * 100.0
        memory = sum(m.rss_pages for m in after) * procfs.PAGE_SIZE
        return TaskStats(task_id, percent, memory, record.memory_limit_bytes)

    async def list_owned(self) -> list[TaskObservation]:
        records = await asyncio.to_thread(load_records, self._data_dir)
        return [await self._observe(r) for r in records]

    async def aclose(self) -> None:
        """Nothing to release: tasks run on, and their records stay for the next driver."""
