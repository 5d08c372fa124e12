"""The user process-runtime tasks run as (`shoal node start --task-user`).

A node running as root starts its tasks as an unprivileged account (`nobody` unless told
otherwise): a task that could act as root would own the machine. The task gets its working
directory, its volumes and its secret files handed over (chown); everything else of the
node's stays out of its reach. A node that is not root can only run tasks as itself.
"""

from __future__ import annotations

import os
import pwd
from dataclasses import dataclass

DEFAULT_TASK_USER = "nobody"


@dataclass(frozen=True, slots=True)
class TaskUser:
    name: str
    uid: int
    gid: int

    @property
    def switches(self) -> bool:
        """Whether tasks run as another user than the node."""
        return self.uid != os.geteuid()

    def popen_options(self) -> dict:
        if not self.switches:
            return {}
        return {"user": self.uid, "group": self.gid, "extra_groups": []}

    def give(self, *paths: str) -> None:
        """Hand `paths` over to the task user (blocking)."""
        if self.switches:
            for path in paths:
                os.chown(path, self.uid, self.gid, follow_symlinks=False)


def node_user() -> TaskUser:
    uid = os.geteuid()
    return TaskUser(pwd.getpwuid(uid).pw_name, uid, os.getegid())


def resolve_task_user(name: str) -> TaskUser:
    """The user called `name` (empty: the default), or ValueError saying why it cannot be."""
    if not name:
        return lookup(DEFAULT_TASK_USER) if os.geteuid() == 0 else node_user()
    user = lookup(name)
    if user.switches and os.geteuid() != 0:
        raise ValueError(
            f"--task-user {name}: only a node running as root can start tasks as "
            f"another user (this one runs as {node_user().name})"
        )
    return user


def lookup(name: str) -> TaskUser:
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise ValueError(f"--task-user {name}: no such user on this machine") from None
    return TaskUser(entry.pw_name, entry.pw_uid, entry.pw_gid)
