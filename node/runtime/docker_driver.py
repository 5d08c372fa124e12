"""The Docker runtime: tasks as containers, through the Docker SDK, never on the event loop.

Short calls go through `asyncio.to_thread`; long-lived streams (followed logs, the events
stream) run on the driver's own executor so they never starve the shared default pool.
Containers carry `shoal.node` besides the task labels: several nodes on one machine may share
one engine, and each must adopt only its own containers.
"""

from __future__ import annotations

import asyncio
import math
import tempfile
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

# isort: off
# The lean SDK first: importing any docker module would import requests with its detector.
from node.runtime.docker_sdk import docker
from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from docker.models.containers import Container
from docker.utils import parse_repository_tag
# isort: on

import contextlib

from node.runtime import task_files
from node.runtime.docker_config import container_kwargs, observation_from_attrs, stats_from_docker
from node.runtime.docker_events import DeathEvents
from node.runtime.health import CheckKind
from node.runtime.model import (
    LABEL_MANAGED,
    LABEL_NODE,
    LABEL_TASK,
    NodeFingerprint,
    RunSpec,
    TaskObservation,
    TaskStats,
    missing,
)
from node.runtime.mounts import host_bind_refused

# Streams held open at once (followed logs + the events stream) before new ones queue.
_MAX_STREAMS = 64


def _explain(exc: Exception) -> str:
    if isinstance(exc, APIError):
        return exc.explanation or str(exc)
    return str(exc) or exc.__class__.__name__


class DockerDriver:
    name = "docker"
    native_health_checks: frozenset[CheckKind] = frozenset({"cmd"})
    command_options: dict = {}  # cmd checks run in the container

    def __init__(
        self,
        client: docker.DockerClient,
        node_id: str,
        *,
        pull_timeout: float = 30.0,
        pull: bool = True,
        host_binds: bool = True,
    ) -> None:
        self._client = client
        self._host_binds = host_binds
        self._node_id = node_id
        self._pull_timeout = pull_timeout
        # An air-gapped node (`--image-pull never`) only runs images it already has.
        self._pull_enabled = pull
        self._streams = ThreadPoolExecutor(_MAX_STREAMS, thread_name_prefix="shoal-docker-stream")
        self._deaths = DeathEvents(client, node_id, self._streams)
        # Tasks that never got a container (the image is missing): inspect must still say why.
        self._failures: dict[str, TaskObservation] = {}
        # Secrets and configs are bind-mounted from here (a tmpfs): the engine must see it.
        self._files_root = task_files.files_root(tempfile.gettempdir(), node_id)

    @classmethod
    async def connect(
        cls,
        node_id: str,
        *,
        timeout: float = 5.0,
        request_timeout: float = 60.0,
        pull_timeout: float = 30.0,
        pull: bool = True,
        host_binds: bool = True,
    ) -> DockerDriver:
        """Reach the engine from the environment (DOCKER_HOST or the default socket) and
        negotiate the API version; raises DockerException when it does not answer in time."""

        def reach() -> docker.DockerClient:
            client = docker.from_env(timeout=request_timeout)
            client.ping()
            return client

        try:
            client = await asyncio.wait_for(asyncio.to_thread(reach), timeout)
        except TimeoutError:
            raise DockerException(f"the Docker Engine did not answer within {timeout}s") from None
        return cls(client, node_id, pull_timeout=pull_timeout, pull=pull, host_binds=host_binds)

    async def fingerprint(self) -> NodeFingerprint:
        info = await asyncio.to_thread(self._client.info)
        return NodeFingerprint(
            cpu_millis=int(info.get("NCPU", 0)) * 1000,
            memory_bytes=int(info.get("MemTotal", 0)),
            runtime=self.name,
            details={
                "engine": str(info.get("ServerVersion", "")),
                "api": self._client.api.api_version,
                "cgroup_driver": str(info.get("CgroupDriver", "")),
                "os": str(info.get("OperatingSystem", "")),
            },
        )

    def _owned_filter(self, task_id: str | None = None) -> dict[str, Any]:
        labels = [f"{LABEL_MANAGED}=1", f"{LABEL_NODE}={self._node_id}"]
        if task_id is not None:
            labels.append(f"{LABEL_TASK}={task_id}")
        return {"label": labels}

    async def _find(self, task_id: str) -> Container | None:
        found = await asyncio.to_thread(
            self._client.containers.list,
            all=True,
            ignore_removed=True,
            filters=self._owned_filter(task_id),
        )
        return found[0] if found else None

    def _fail(self, spec: RunSpec, error: str) -> TaskObservation:
        failed = TaskObservation(spec.task_id, "failed", spec.service, spec.slot, error=error)
        self._failures[spec.task_id] = failed
        return failed

    async def _pull(self, image: str) -> str | None:
        """None when the image is now present, otherwise why it could not be pulled."""
        if not self._pull_enabled:
            return "image pulls are disabled on this node (--image-pull never)"
        repository, tag = parse_repository_tag(image)
        try:
            await asyncio.wait_for(
                asyncio.to_thread(self._client.images.pull, repository, tag=tag or "latest"),
                self._pull_timeout,
            )
        except TimeoutError:
            return f"pulling it timed out after {self._pull_timeout}s"
        except DockerException as exc:
            return _explain(exc)
        return None

    async def _create(self, spec: RunSpec) -> Container | TaskObservation:
        refused = host_bind_refused(spec.mounts, self._host_binds)
        if refused:
            return self._fail(spec, refused)
        kwargs = container_kwargs(spec, self._node_id)
        if spec.files:
            directory = task_files.task_files_dir(self._files_root, spec.task_id)
            try:
                await asyncio.to_thread(task_files.write_files, directory, spec.files)
            except OSError as exc:
                return self._fail(spec, f"cannot write its secrets and configs: {exc}")
            kwargs["mounts"] = kwargs.get("mounts", []) + task_files.docker_mounts(
                directory, spec.files
            )
        try:
            return await asyncio.to_thread(self._client.containers.create, **kwargs)
        except ImageNotFound:
            pass
        except DockerException as exc:
            return self._fail(spec, f"cannot create the container: {_explain(exc)}")
        reason = await self._pull(spec.image)
        if reason is not None:
            return self._fail(
                spec, f"image {spec.image!r} is not on this node and cannot be pulled: {reason}"
            )
        try:
            return await asyncio.to_thread(self._client.containers.create, **kwargs)
        except DockerException as exc:
            return self._fail(spec, f"cannot create the container: {_explain(exc)}")

    async def start(self, spec: RunSpec) -> TaskObservation:
        self._failures.pop(spec.task_id, None)
        container = await self._find(spec.task_id)
        if container is not None and observation_from_attrs(container.attrs).alive:
            return observation_from_attrs(container.attrs)
        if container is None:
            created = await self._create(spec)
            if isinstance(created, TaskObservation):
                return created
            container = created
            try:
                for network in spec.networks[1:]:
                    await asyncio.to_thread(
                        self._client.api.connect_container_to_network, container.id, network
                    )
            except DockerException as exc:
                return self._fail(spec, f"cannot join network {network!r}: {_explain(exc)}")
        try:
            await asyncio.to_thread(container.start)
        except DockerException as exc:
            # The container keeps State.Error; inspect reads it from there. The message
            # from the start call is the clearer one for the caller.
            await asyncio.to_thread(container.reload)
            seen = observation_from_attrs(container.attrs)
            return TaskObservation(
                spec.task_id,
                "failed",
                spec.service,
                spec.slot,
                exit_code=seen.exit_code,
                error=f"cannot start the container: {_explain(exc)}",
            )
        await asyncio.to_thread(container.reload)
        return observation_from_attrs(container.attrs)

    async def inspect(self, task_id: str) -> TaskObservation:
        container = await self._find(task_id)
        if container is not None:
            return observation_from_attrs(container.attrs)
        return self._failures.get(task_id) or missing(task_id)

    async def wait(self, task_id: str) -> TaskObservation:
        while True:
            died = await self._deaths.subscribe(task_id)
            try:
                seen = await self.inspect(task_id)
                if not seen.alive:
                    return seen
                await died
            finally:
                died.cancel()

    async def stop(self, task_id: str, grace: float) -> TaskObservation:
        container = await self._find(task_id)
        if container is None:
            return self._failures.get(task_id) or missing(task_id)
        try:
            # Docker's grace is whole seconds; rounding up never cuts a task short.
            await asyncio.to_thread(container.stop, timeout=math.ceil(grace))
        except NotFound:
            return missing(task_id)
        await asyncio.to_thread(container.reload)
        return observation_from_attrs(container.attrs)

    async def remove(self, task_id: str) -> None:
        self._failures.pop(task_id, None)
        container = await self._find(task_id)
        if container is not None:
            with contextlib.suppress(NotFound):
                await asyncio.to_thread(container.remove, force=True, v=True)
        await asyncio.to_thread(
            task_files.remove_files, task_files.task_files_dir(self._files_root, task_id)
        )

    async def logs(
        self, task_id: str, *, follow: bool = False, tail: int | None = None
    ) -> AsyncIterator[bytes]:
        container = await self._find(task_id)
        if container is None:
            return
        loop = asyncio.get_running_loop()
        stream = await loop.run_in_executor(
            self._streams,
            lambda: container.logs(
                stream=True, follow=follow, tail="all" if tail is None else tail
            ),
        )
        try:
            while (
                chunk := await loop.run_in_executor(self._streams, next, stream, None)
            ) is not None:
                yield chunk
        finally:
            stream.close()  # unblocks the reading thread when the consumer leaves early

    async def stats(self, task_id: str) -> TaskStats | None:
        container = await self._find(task_id)
        if container is None or not observation_from_attrs(container.attrs).alive:
            return None
        raw = await asyncio.to_thread(container.stats, stream=False)
        return stats_from_docker(task_id, raw)

    async def list_owned(self) -> list[TaskObservation]:
        found = await asyncio.to_thread(
            self._client.containers.list,
            all=True,
            ignore_removed=True,
            filters=self._owned_filter(),
        )
        return [observation_from_attrs(c.attrs) for c in found]

    async def aclose(self, timeout: float = 5.0) -> None:
        await self._deaths.aclose(timeout)
        self._streams.shutdown(wait=False, cancel_futures=True)
        await asyncio.to_thread(self._client.close)
