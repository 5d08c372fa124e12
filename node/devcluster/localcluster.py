"""Clusters of real `shoal node` processes on loopback addresses.

Used by `shoal dev`, the integration tests and the benchmarks. Each cluster gets its own
127.0.X.0/24 block (`shoal dev` uses 127.0.0.0/24), so clusters never collide with each other
or with sockets in TIME_WAIT from an earlier one. Nodes are separate OS processes started
exactly as an operator would (`python -m node node start ...`) and stopped with real signals.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import pwd
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from node.client import UNIX_PREFIX, ApiError, ShoalClient, Unreachable
from node.config import load
from node.local_socket import socket_path
from node.pki.contexts import client_context
from node.pki.store import ca_path

API_PORT = 7420
# Node flags for tests that compare placements: plain processes and equal, fixed capacities,
# so the outcome does not depend on the size of the machine running them.
EQUAL_PROCESS_NODES = ["--runtime", "process", "--cpus", "4", "--memory", str(8 << 30)]
_blocks = itertools.count((os.getpid() * 7) % 230)


def next_block() -> int:
    return 20 + next(_blocks) % 230


@dataclass
class NodeProc:
    index: int
    block: int
    base_dir: str
    extra_args: list[str] = field(default_factory=list)
    api_port: int = API_PORT
    prefix: str = "n"
    # Tests and benchmarks never reach for a registry: their images are made locally.
    image_pull: str = "never"
    # Where the node's code is read from (an unpacked Shoal tree, as an upgrade test runs an
    # older release); None: the code of this process.
    code_dir: str | None = None
    proc: subprocess.Popen | None = None

    @property
    def name(self) -> str:
        return f"{self.prefix}{self.index}"

    @property
    def address(self) -> str:
        return f"127.0.{self.block}.{self.index}"

    @property
    def api(self) -> str:
        return f"{self.address}:{self.api_port}"

    @property
    def data_dir(self) -> str:
        return os.path.join(self.base_dir, self.name)

    @property
    def log_path(self) -> str:
        return os.path.join(self.base_dir, f"{self.name}.log")

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def token_path(self) -> str:
        return os.path.join(self.data_dir, "join-token")

    @property
    def api_token(self) -> str:
        """The cluster's API token, read from the node's data dir once it has one ("" before)."""
        stored = load(self.data_dir)
        return stored.identity.keys.api_token if stored and stored.identity else ""

    @property
    def node_headers(self) -> dict[str, str]:
        """What this node sends on calls to other nodes: the API token and its own key."""
        stored = load(self.data_dir)
        if not (stored and stored.identity):
            return {}
        return {
            "Authorization": f"Bearer {stored.identity.keys.api_token}",
            **stored.identity.credentials.headers,
        }

    @property
    def url(self) -> str:
        """The node's API over TCP: HTTPS only."""
        return f"https://{self.api}"

    @property
    def ca_file(self) -> str:
        """The cluster's CA certificates, as this node trusts them (there once it started)."""
        return ca_path(self.data_dir)

    def ssl_context(self) -> ssl.SSLContext:
        """A client context that verifies this cluster's nodes."""
        with open(self.ca_file, "rb") as f:
            return client_context(f.read())

    @property
    def socket(self) -> str:
        """The node's unix socket, as an API address."""
        return UNIX_PREFIX + socket_path(self.data_dir)

    def command(self, join: str | None = None, token: str | None = None) -> list[str]:
        argv = [sys.executable, "-m", "node", "node", "start", "--data-dir", self.data_dir]
        if os.path.exists(os.path.join(self.data_dir, "node.json")):
            # A restart needs only the data dir; the log format is not part of it.
            kept = (
                self.extra_args.index("--log-format") if "--log-format" in self.extra_args else -1
            )
            return argv + (self.extra_args[kept : kept + 2] if kept >= 0 else [])
        port = self.api_port
        argv += [
            "--name",
            self.name,
            "--advertise",
            self.address,
            "--api-port",
            str(port),
            "--raft-port",
            str(port + 1),
            "--gossip-port",
            str(port + 2),
            "--dns-port",
            str(port + 3),
            "--image-pull",
            self.image_pull,
            *self.extra_args,
        ]
        if "--task-user" not in self.extra_args:
            # Local clusters run their tasks as whoever runs them (a test's scripts and files
            # are its own); a node's default is an unprivileged account.
            argv += ["--task-user", pwd.getpwuid(os.geteuid()).pw_name]
        if join:
            argv += ["--join", join, "--token", token or ""]
        return argv

    def start(
        self,
        join: str | None = None,
        token: str | None = None,
        also: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        """`also` and `env`: flags and environment for this start only (--restore,
        --force-new-cluster)."""
        _by_api[self.api] = self
        env = dict(os.environ, SHOAL_QUIET="1", PYTHONUNBUFFERED="1", **(env or {}))
        if self.code_dir is not None:
            # `python -m` looks in its working directory first, then PYTHONPATH.
            env["PYTHONPATH"] = self.code_dir
        with open(self.log_path, "ab") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(
                self.command(join, token) + list(also),
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.code_dir,
            )

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def kill9(self) -> None:
        if self.running:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.running:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def log(self) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()[-4000:]
        except OSError:
            return ""

    def client(self, timeout: float = 10.0) -> ShoalClient:
        # The context is made at the first request: the node writes its CA file as it starts.
        return ShoalClient(self.api, self.api_token, timeout=timeout, ssl_context=self.ssl_context)


# The nodes started by this process, by API address: tests that name a node by its address
# (the CLI's --addr) find its token here.
_by_api: dict[str, NodeProc] = {}


def api_token_for(addr: str) -> str:
    """The API token of the node this process started at `addr` (HOST:PORT or a URL)."""
    node = _by_api.get(urlsplit(addr).netloc if "://" in addr else addr)
    return node.api_token if node else ""


def ca_for(addr: str) -> str:
    """The CA file of the node this process started at `addr` ("" for none)."""
    node = _by_api.get(urlsplit(addr).netloc if "://" in addr else addr)
    return node.ca_file if node else ""


def ssl_for(addr: str) -> ssl.SSLContext:
    """A client context that verifies the node this process started at `addr` (one per node:
    aiohttp pools connections by context)."""
    node = _by_api[urlsplit(addr).netloc if "://" in addr else addr]
    if node.api not in _contexts:
        _contexts[node.api] = node.ssl_context()
    return _contexts[node.api]


_contexts: dict[str, ssl.SSLContext] = {}


def auth_for(addr: str) -> dict[str, str]:
    """The Authorization header for the node this process started at `addr`."""
    return {"Authorization": f"Bearer {api_token_for(addr)}"}


async def wait_for(
    check: Callable[[], Awaitable[Any]], timeout: float = 30.0, what: str = "condition"
) -> Any:
    """Retry `check` until it returns a truthy value; API errors count as 'not yet'."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = await check()
            if last:
                return last
        except (ApiError, Unreachable, AssertionError) as exc:
            last = exc
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}; last: {last!r}")


def stop_all(nodes: list[NodeProc]) -> None:
    """Stop every node: all are told at once, since each spends a moment saying goodbye."""
    for node in nodes:
        if node.running:
            node.proc.send_signal(signal.SIGCONT)
            node.proc.terminate()
    for node in nodes:
        node.stop()


@contextlib.asynccontextmanager
async def started_cluster(
    base_dir: str, size: int, extra_args: list[str] | None = None
) -> AsyncIterator[LocalCluster]:
    """A running cluster for the length of a `with` block: always stopped at the end, and its
    node logs printed (a test runner shows them only when the test failed)."""
    cluster = LocalCluster(base_dir, size, extra_args)
    try:
        await cluster.start()
        yield cluster
    finally:
        cluster.stop()
        print(cluster.logs())


class LocalCluster:
    def __init__(self, base_dir: str, size: int, extra_args: list[str] | None = None) -> None:
        self.block = next_block()
        self.nodes = [
            NodeProc(i, self.block, base_dir, list(extra_args or [])) for i in range(1, size + 1)
        ]
        self.token = ""

    async def get(self, i: int, path: str) -> Any:
        async with self.nodes[i].client() as client:
            return await client.get(path)

    async def start(self, count: int | None = None) -> None:
        first = self.nodes[0]
        first.start()
        await wait_for(lambda: self._leader_known(0), what=f"{first.name} to lead")
        with open(first.token_path) as f:
            self.token = f.read().strip()
        for node in self.nodes[1:count]:
            await self.add(node)

    async def add(self, node: NodeProc) -> None:
        node.start(join=self.nodes[0].api, token=self.token)
        await wait_for(lambda: self._registered(node), what=f"{node.name} to join")

    async def _leader_known(self, i: int) -> bool:
        return (await self.get(i, "/v1/cluster"))["leader"] is not None

    async def _registered(self, node: NodeProc) -> bool:
        async with node.client() as client:
            return any(n["name"] == node.name for n in await client.get("/v1/nodes"))

    async def wait_voters(self, count: int, timeout: float = 60.0) -> None:
        """Until the first node counts `count` voters (autopilot promotes joiners by itself)."""

        async def enough() -> bool:
            return len((await self.get(0, "/v1/cluster"))["voters"]) == count

        await wait_for(enough, timeout=timeout, what=f"{count} voters")

    async def leader_index(self, among: list[int] | None = None) -> int:
        """Index of the node that every node in `among` (default: all running) names leader."""
        among = among if among is not None else [i for i, n in enumerate(self.nodes) if n.running]

        async def agreed() -> str | None:
            names = set()
            for i in among:
                cluster = await self.get(i, "/v1/cluster")
                names.add(cluster["leader"]["name"] if cluster["leader"] else None)
            if len(names) != 1:
                return None
            name = names.pop()
            # A dead leader is still named until the election timeout: wait for a live one.
            return name if name in {self.nodes[i].name for i in among} else None

        name = await wait_for(agreed, what="agreement on a leader")
        return next(i for i, n in enumerate(self.nodes) if n.name == name)

    def stop(self) -> None:
        stop_all(self.nodes)

    def logs(self) -> str:
        return "\n".join(f"--- {n.name} ---\n{n.log()}" for n in self.nodes)
