"""Volumes at the runtime seam: `Mount` (a RunSpec field) and what each driver makes of it.

Docker: a named volume is a Docker volume of that name, created by the engine when the first
container mounting it is created, labelled `shoal.volume=NAME`; removing a task's container
never removes it. Binds and tmpfs are Docker's own.

Processes cannot be given a different view of the file system, so the process runtime
provides each mount as a host directory: a named volume is DATA_DIR/volumes/NAME, a bind is
its host path, an anonymous volume or tmpfs is a directory of the task's own (removed with
it; not memory-backed). The task finds it as a symlink in its working directory named after
the target's last part (`/var/lib/data` -> `./data`) and in `SHOAL_VOLUME_DATA`. `read_only`
is not enforced there.
"""

from __future__ import annotations

import os
import posixpath
import re
from dataclasses import dataclass
from typing import Any, Literal

MountType = Literal["volume", "bind", "tmpfs"]
LABEL_VOLUME = "shoal.volume"
VOLUMES_DIR = "volumes"
_VOLUME_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


class MountError(OSError):
    """A mount this runtime cannot provide; the text names the mount and why."""


@dataclass(frozen=True, slots=True)
class Mount:
    """`source` is the volume's name (empty: an anonymous volume), a bind's host path, or
    empty for tmpfs; `target` is the absolute path in the task."""

    target: str
    source: str = ""
    type: MountType = "volume"
    read_only: bool = False

    def __post_init__(self) -> None:
        if not self.target.startswith("/"):
            raise ValueError(f"mounts: target must be an absolute path, not {self.target!r}")
        if self.type == "bind" and not self.source.startswith("/"):
            raise ValueError(
                f"mounts: a bind of {self.target} needs an absolute host path, not {self.source!r}"
            )
        if self.type == "volume" and self.source and not _VOLUME_NAME.fullmatch(self.source):
            raise ValueError(f"mounts: {self.source!r} is not a volume name")
        if self.type == "tmpfs" and self.source:
            raise ValueError(f"mounts: the tmpfs at {self.target} has a source ({self.source!r})")
        if self.type not in ("volume", "bind", "tmpfs"):
            raise ValueError(f"mounts: type must be volume, bind or tmpfs, not {self.type!r}")


# -- Docker ---------------------------------------------------------------------------------


def docker_mount(mount: Mount) -> dict[str, Any]:
    """A mount in the Engine API's form (HostConfig.Mounts). A named volume that does not
    exist yet is created by the engine with the labels in VolumeOptions."""
    plain: dict[str, Any] = {
        "Target": mount.target,
        "Type": mount.type,
        "ReadOnly": mount.read_only,
    }
    if mount.source:
        plain["Source"] = mount.source
    if mount.type == "volume" and mount.source:
        plain["VolumeOptions"] = {"Labels": {LABEL_VOLUME: mount.source}}
    return plain


# -- processes ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProcessMount:
    """Where a mount is on the host for a process task, and how the task finds it."""

    path: str
    link: str  # the symlink's name in the task's working directory
    env: str  # the variable holding `path`
    create: bool  # the driver makes the directory; a bind's must already exist


def host_bind_refused(mounts: tuple[Mount, ...], allowed: bool) -> str | None:
    """Why the task may not run on a node that allows no host bind mounts, or None."""
    for i, mount in enumerate(mounts):
        if mount.type == "bind" and not allowed:
            return (
                f"mounts[{i}]: bind mounts of host paths ({mount.source}) are disabled on "
                "this node (--host-binds no)"
            )
    return None


def process_mounts(
    mounts: tuple[Mount, ...], data_dir: str, task_dir: str
) -> tuple[ProcessMount, ...]:
    """Each mount as a host directory; MountError when two would share a link or variable."""
    planned: list[ProcessMount] = []
    for i, mount in enumerate(mounts):
        name = posixpath.basename(mount.target.rstrip("/"))
        if not name or name in (".", ".."):
            raise MountError(
                f"mounts[{i}]: target {mount.target!r} has no last part to name "
                "its link in the task's directory"
            )
        env = "SHOAL_VOLUME_" + re.sub(r"[^A-Z0-9]", "_", name.upper())
        clash = next((j for j, p in enumerate(planned) if p.link == name or p.env == env), None)
        if clash is not None:
            raise MountError(
                f"mounts[{i}]: target {mount.target!r} would share the link ./{name} "
                f"or {env} with mounts[{clash}] (the process runtime names both "
                "after the target's last part)"
            )
        if mount.type == "bind":
            path, create = mount.source, False
        elif mount.type == "volume" and mount.source:
            path, create = os.path.join(data_dir, VOLUMES_DIR, mount.source), True
        else:  # an anonymous volume or tmpfs: the task's own
            path, create = os.path.join(task_dir, "mounts", name), True
        planned.append(ProcessMount(path, name, env, create))
    return tuple(planned)


def prepare_mounts(planned: tuple[ProcessMount, ...], work_dir: str) -> dict[str, str]:
    """Make the directories and links; returns the variables for the task's environment."""
    env: dict[str, str] = {}
    for mount in planned:
        if mount.create:
            os.makedirs(mount.path, exist_ok=True)
        elif not os.path.isdir(mount.path):
            raise MountError(f"bind source {mount.path!r} is not a directory on this node")
        link = os.path.join(work_dir, mount.link)
        if os.path.islink(link):
            os.unlink(link)  # a restart of the task: the same link, made again
        os.symlink(mount.path, link)
        env[mount.env] = mount.path
    return env
