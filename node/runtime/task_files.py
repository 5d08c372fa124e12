"""Secrets and configs as files on the node, for a driver to hand to its task.

A task's files live in one directory that mirrors their paths in the task
(`DIR/run/secrets/db`, `DIR/app.conf`). The directory is on a tmpfs (/dev/shm, or
$XDG_RUNTIME_DIR) when one is writable, so a secret's plaintext never reaches a disk; it
exists only while the task does (the driver deletes it on remove). The Docker driver
bind-mounts it into the container read-only; the process driver points the task at it.
Every function here blocks: drivers call them through `asyncio.to_thread`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil

from node.runtime.model import TaskFile

log = logging.getLogger(__name__)

SECRETS_DIR = "/run/secrets"
_TMPFS_CANDIDATES = ("/dev/shm", "XDG_RUNTIME_DIR")
_ROOT_NAME = "shoal-task-files"


def tmpfs_root(owner: str) -> str | None:
    """A writable directory on a tmpfs for the task files of one node (`owner`: its id or
    data dir; nodes sharing a machine never share it), or None when there is none."""
    name = f"{_ROOT_NAME}-{hashlib.sha256(owner.encode()).hexdigest()[:16]}"
    for candidate in _TMPFS_CANDIDATES:
        base = candidate if candidate.startswith("/") else os.environ.get(candidate, "")
        if base and os.path.isdir(base) and os.access(base, os.W_OK | os.X_OK):
            return os.path.join(base, name)
    return None


def files_root(fallback: str, owner: str) -> str:
    """Where task files go on this node: a tmpfs, else `fallback` (with a warning, once)."""
    root = tmpfs_root(owner)
    if root is None:
        log.warning(
            "no writable tmpfs (/dev/shm, $XDG_RUNTIME_DIR): secrets given to tasks are "
            "written under %s while their tasks run",
            fallback,
        )
        return fallback
    return root


def task_files_dir(root: str, task_id: str) -> str:
    return os.path.join(root, task_id)


def host_path(directory: str, target: str) -> str:
    """Where the file for `target` (an absolute path in the task) lives on the node."""
    return os.path.join(directory, target.lstrip("/"))


def write_files(directory: str, files: tuple[TaskFile, ...]) -> None:
    """Write the task's files afresh: only the owner may enter the directory on the node."""
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(os.path.dirname(directory), mode=0o700, exist_ok=True)
    os.makedirs(directory, mode=0o700)
    for item in files:
        path = host_path(directory, item.target)
        # Inner directories stay traversable: in a container they are the mount points.
        os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(item.data)
        os.chmod(path, item.mode)


def remove_files(directory: str) -> None:
    shutil.rmtree(directory, ignore_errors=True)


def docker_mounts(directory: str, files: tuple[TaskFile, ...]) -> list[dict]:
    """Read-only bind mounts (Docker's HostConfig.Mounts) of a task's files: /run/secrets as
    one directory, as Swarm mounts it, and every file elsewhere on its own."""
    mounts: list[dict] = []
    if any(f.target.startswith(SECRETS_DIR + "/") for f in files):
        mounts.append(_bind(host_path(directory, SECRETS_DIR), SECRETS_DIR))
    for item in files:
        if not item.target.startswith(SECRETS_DIR + "/"):
            mounts.append(_bind(host_path(directory, item.target), item.target))
    return mounts


def _bind(source: str, target: str) -> dict:
    return {"Type": "bind", "Source": source, "Target": target, "ReadOnly": True}
