"""Choosing the runtime for `--runtime auto|docker|process`."""

from __future__ import annotations

import logging
from typing import Literal

from node.runtime.driver import Driver
from node.runtime.process_driver import ProcessDriver

log = logging.getLogger(__name__)

RuntimeChoice = Literal["auto", "docker", "process"]


class RuntimeUnavailable(RuntimeError):
    """The runtime asked for cannot run here; the text says why."""


async def select_driver(runtime: RuntimeChoice, data_dir: str, *, node_id: str,
                        docker_timeout: float = 2.0, pull_images: bool = True) -> Driver:
    """docker: the Docker Engine or RuntimeUnavailable saying why not. process: plain processes.
    auto: Docker when the engine answers within `docker_timeout`, plain processes otherwise."""
    if runtime == "process":
        return ProcessDriver(data_dir, node_id=node_id)
    if runtime not in ("auto", "docker"):
        raise ValueError(f"runtime: must be 'auto', 'docker' or 'process', not {runtime!r}")
    from node.runtime.docker_driver import DockerDriver  # only now: see node.runtime
    from docker.errors import DockerException

    try:
        return await DockerDriver.connect(node_id, timeout=docker_timeout, pull=pull_images)
    except DockerException as exc:
        if runtime == "docker":
            raise RuntimeUnavailable(str(exc)) from exc
        log.info("no Docker Engine answered (%s): running tasks as plain processes", exc)
        return ProcessDriver(data_dir, node_id=node_id)
