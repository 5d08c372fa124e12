"""The process driver's memory on disk: one small state file per task, and host ports.

DATA_DIR/tasks/<task_id>/ holds `state.json` (who the task is and which process runs it),
`output.log` (its stdout and stderr, interleaved as written) and `work/` (its working
directory). A restarted agent rebuilds everything it needs from the state files.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from dataclasses import dataclass, field

from consensus.wire import WireError, from_plain, to_plain
from node.runtime.model import PortToPublish, PublishedPort

log = logging.getLogger(__name__)

STATE_FILE = "state.json"
LOG_FILE = "output.log"
WORK_DIR = "work"


@dataclass(frozen=True, slots=True)
class TaskRecord:
    task_id: str
    service: str
    slot: int
    pid: int
    # The process's start time in clock ticks since boot: with the pid, its identity.
    start_ticks: int
    started_at: float
    endpoints: tuple[PublishedPort, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)
    memory_limit_bytes: int = 0
    stop_signal: int = 15  # SIGTERM, unless the service names another


def task_dir(data_dir: str, task_id: str) -> str:
    return os.path.join(data_dir, "tasks", task_id)


def save_record(data_dir: str, record: TaskRecord) -> None:
    path = os.path.join(task_dir(data_dir, record.task_id), STATE_FILE)
    temporary = path + ".new"
    with open(temporary, "w") as f:
        json.dump(to_plain(record), f)
    os.replace(temporary, path)  # a reader sees the old record or the new one, never half


def load_record(data_dir: str, task_id: str) -> TaskRecord | None:
    path = os.path.join(task_dir(data_dir, task_id), STATE_FILE)
    try:
        with open(path) as f:
            return from_plain(TaskRecord, json.load(f))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, WireError) as exc:
        # A damaged record must not stop the agent from adopting the others.
        log.warning("ignoring the unreadable task record %s: %s", path, exc)
        return None


def load_records(data_dir: str) -> list[TaskRecord]:
    try:
        names = sorted(os.listdir(os.path.join(data_dir, "tasks")))
    except FileNotFoundError:
        return []
    return [r for r in (load_record(data_dir, name) for name in names) if r is not None]


def allocate_port(host: str, protocol: str) -> int:
    """A host port that is free now: the kernel picks it. The task binds it moments later;
    the kernel hands out ephemeral ports in turn, so another pick seldom lands on it."""
    kind = socket.SOCK_STREAM if protocol == "tcp" else socket.SOCK_DGRAM
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, kind) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def publish(host: str, ports: tuple[PortToPublish, ...]) -> tuple[PublishedPort, ...]:
    return tuple(
        PublishedPort(p.target, p.protocol, host, p.published or allocate_port(host, p.protocol))
        for p in ports
    )


def port_environment(endpoints: tuple[PublishedPort, ...]) -> dict[str, str]:
    """PORT (the first port), SHOAL_PORT_<TARGET> (the first port of that target) and
    SHOAL_PORT_<TARGET>_<PROTOCOL>: the host ports the process must listen on, since several
    replicas share one host."""
    env: dict[str, str] = {}
    for ep in endpoints:
        env.setdefault(f"SHOAL_PORT_{ep.target}", str(ep.port))
        env[f"SHOAL_PORT_{ep.target}_{ep.protocol.upper()}"] = str(ep.port)
    if endpoints:
        env["PORT"] = str(endpoints[0].port)
    return env
