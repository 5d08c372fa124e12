"""Choosing the runtime for `--runtime auto|docker|process`."""

from __future__ import annotations

import logging
from typing import Literal

from node.runtime.driver import Driver
from node.runtime.process_driver import ProcessDriver
from node.runtime.task_user import resolve_task_user

log = logging.getLogger(__name__)

RuntimeChoice = Literal["auto", "docker", "process"]


class RuntimeUnavailable(RuntimeError):
    """The runtime asked for cannot run here; the text says why."""


async def select_driver(
    runtime: RuntimeChoice,
    data_dir: str,
    *,
    node_id: str,
    docker_timeout: float = 2.0,
    pull_images: bool = True,
    task_user: str = "",
    host_binds: bool = True,
) -> Driver:
    """docker: the Docker Engine or RuntimeUnavailable saying why not. process: plain processes
    as `task_user` (see node.runtime.task_user). auto: Docker when the engine answers within
    `docker_timeout`, plain processes otherwise. ValueError for a task user that cannot be."""
    user = resolve_task_user(task_user)

    def processes() -> ProcessDriver:
        return ProcessDriver(data_dir, node_id=node_id, task_user=user, host_binds=host_binds)

    if runtime == "process":
        return processes()
    if runtime not in ("auto", "docker"):
        raise ValueError(f"runtime: must be 'auto', 'docker' or 'process', not {runtime!r}")
    from docker.errors import DockerException

    from node.runtime.docker_driver import DockerDriver  # only now: see node.runtime

    try:
        return await DockerDriver.connect(
            node_id, timeout=docker_timeout, pull=pull_images, host_binds=host_binds
        )
    except DockerException as exc:
        if runtime == "docker":
            raise RuntimeUnavailable(str(exc)) from exc
        log.info("no Docker Engine answered (%s): running tasks as plain processes", exc)
        return processes()
