"""Shoal nodes as hosts of a test bed: node i runs on bed host i, in its own network namespace.

    cluster = BedCluster(bed, workdir, session)
    await cluster.form()                    # n0 bootstraps, the others join, all are voters
    await cluster.restart("n1", graceful=True)
    state = await cluster.final_state(keys)

Nodes are started exactly as an operator would (`python -m node node start ...`; a restart
passes only `--data-dir`) and stopped with real signals. The test process talks to them over
the bed's bridge, which is not loopback, so every call carries the cluster's API token.
"""

from __future__ import annotations

import asyncio
import signal
import ssl
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import aiohttp

from consensus.model import target_voter_count
from node.config import TOKEN_FILE, load
from node.devcluster.localcluster import wait_for
from node.pki.contexts import client_context
from node.runtime import ProcessDriver
from tests.netbed import HostProcess, NetBed
from tests.safety.history import TaskRecord
from tests.safety.shoal_client import LabelKey, ShoalApi

REPO = Path(__file__).resolve().parents[2]
API_PORT = 7420
# A node owns a 10 s shutdown budget; one still running after this is killed (and reported).
STOP_GRACE = 12.0
# How long the cluster may take to elect, catch up or agree after a fault before the test fails.
RECOVERY_TIMEOUT = 45.0
BARRIER_LABEL = "safety.barrier"


class NotCaughtUp(AssertionError):
    """A node did not catch up with the leader within RECOVERY_TIMEOUT after a fault."""


class BedCluster:
    """Shoal nodes n0..nN-1, node i on bed host i; n0 bootstraps, the others join it."""

    def __init__(
        self,
        bed: NetBed,
        workdir: Path,
        session: aiohttp.ClientSession,
        *,
        hosts: int | None = None,
        runtime: str = "process",
        extra_args: Sequence[str] = (),
        node_args: Mapping[str, Sequence[str]] = {},
        node_env: Mapping[str, Mapping[str, str]] = {},
    ) -> None:
        # The first `hosts` hosts of the bed run nodes (default: all); the others stay outside.
        self.hosts = {f"n{host.index}": host for host in bed.hosts[:hosts]}
        self.runtime = runtime
        self.extra_args = tuple(extra_args)
        self.node_args = node_args
        self.node_env = node_env
        self.names = tuple(self.hosts)
        self.workdir = workdir
        self.session = session
        self.processes: dict[str, HostProcess] = {}
        # When each node's processes were started (monotonic, the history's clock).
        self.starts: dict[str, list[float]] = {name: [] for name in self.names}
        # Nodes that did not exit within STOP_GRACE of a SIGTERM and had to be killed.
        self.ignored_sigterm: list[str] = []
        self.token = ""
        addresses = {name: f"{host.address}:{API_PORT}" for name, host in self.hosts.items()}
        self._addresses = addresses
        self._api: ShoalApi | None = None

    @property
    def api(self) -> ShoalApi:
        assert self._api is not None, "form() the cluster first: the API token comes from n0"
        return self._api

    def data_dir(self, name: str) -> Path:
        return self.workdir / name

    @property
    def api_token(self) -> str:
        """The cluster's API token, from n0's data dir (the join token does not hold it)."""
        return load(str(self.data_dir(self.names[0]))).identity.keys.api_token

    @property
    def ssl_context(self) -> ssl.SSLContext:
        """Verifies the nodes against the cluster's CA, as n0 holds it."""
        return client_context((self.data_dir(self.names[0]) / "tls" / "ca.pem").read_bytes())

    def _argv(self, name: str) -> list[str]:
        argv = [
            sys.executable,
            "-m",
            "node",
            "node",
            "start",
            "--data-dir",
            str(self.data_dir(name)),
        ]
        if (self.data_dir(name) / "node.json").exists():
            return argv  # a restart needs only the data dir
        argv += [
            "--name",
            name,
            "--advertise",
            self.hosts[name].address,
            "--runtime",
            self.runtime,
            *self.extra_args,
            *self.node_args.get(name, ()),
            "--api-port",
            str(API_PORT),
            "--raft-port",
            str(API_PORT + 1),
            "--gossip-port",
            str(API_PORT + 2),
            "--dns-port",
            str(API_PORT + 3),
        ]
        if name != self.names[0]:
            argv += ["--join", self._addresses[self.names[0]], "--token", self.token]
        return argv

    async def start(self, name: str) -> None:
        env = {"SHOAL_QUIET": "1", "PYTHONUNBUFFERED": "1", **self.node_env.get(name, {})}
        self.starts[name].append(time.monotonic())
        self.processes[name] = await asyncio.to_thread(
            self.hosts[name].spawn, self._argv(name), env, None, REPO
        )

    async def form(self) -> None:
        """Bootstrap n0, join the others one by one, wait until every node sees all voters."""
        first = self.names[0]
        await self.start(first)
        token_file = self.data_dir(first) / TOKEN_FILE

        async def token() -> str:
            self._raise_if_exited(first)
            return token_file.read_text().strip() if token_file.exists() else ""

        self.token = await wait_for(token, what=f"{first}'s join token")
        self._api = ShoalApi(
            self._addresses, self.api_token, self.session, ssl_context=self.ssl_context
        )
        await self.wait_leader([first])
        for name in self.names[1:]:
            await self.start(name)
            await self.wait_leader([first, name])
        voters = target_voter_count(len(self.names))

        async def all_voters() -> bool:
            return all([len((await self.api.cluster(n))["voters"]) == voters for n in self.names])

        await wait_for(all_voters, timeout=RECOVERY_TIMEOUT, what=f"{voters} voters on every node")

    def _raise_if_exited(self, name: str) -> None:
        process = self.processes[name]
        if not process.alive:
            raise RuntimeError(f"{name} exited with {process.returncode}:\n{process.log()[-3000:]}")

    def running(self) -> list[str]:
        return [name for name in self.names if self.processes[name].alive]

    async def wait_leader(self, among: Sequence[str] | None = None) -> str:
        """The node that every node in `among` (default: all running) names leader, once
        they agree on a leader that is one of them."""
        group = list(among) if among is not None else self.running()

        async def agreed() -> str | None:
            for name in group:
                self._raise_if_exited(name)
            answers = [await self.api.cluster(name) for name in group]
            leaders = {a["leader"]["name"] if a["leader"] else None for a in answers}
            leader = leaders.pop() if len(leaders) == 1 else None
            return leader if leader in group else None

        return await wait_for(
            agreed,
            timeout=RECOVERY_TIMEOUT,
            what=f"{', '.join(group)} to agree on a leader among them",
        )

    async def wait_caught_up(self, name: str) -> None:
        """`name` has a leader and has applied everything the leader had applied once `name`
        answered (a node replays and catches up after a restart or a partition)."""
        leader = await self.wait_leader()
        target = (await self.api.cluster(leader))["applied"]

        async def applied() -> bool:
            self._raise_if_exited(name)
            if (await self.api.cluster(name))["applied"] >= target:
                return True
            raise AssertionError(await self.where_everyone_stands())

        try:
            await wait_for(
                applied, timeout=RECOVERY_TIMEOUT, what=f"{name} to apply up to {target}"
            )
        except AssertionError as exc:
            raise NotCaughtUp(
                f"{exc}\nRaft connections:\n{await self.raft_connections()}"
            ) from None

    async def restart(self, name: str, graceful: bool) -> None:
        """SIGTERM (or kill -9) `name`, start it again from its data dir alone, wait until it
        has caught up."""
        process = self.processes[name]
        if graceful:
            if await asyncio.to_thread(process.stop, STOP_GRACE) == -signal.SIGKILL:
                self.ignored_sigterm.append(name)
        else:
            await asyncio.to_thread(process.kill)
        await self.start(name)
        await self.wait_caught_up(name)

    async def final_state(self, keys: Sequence[str], agree: bool = True) -> dict[str, str]:
        """The labels under `keys`, read after a barrier write through the leader (so every
        write acknowledged before it is included), once every node reports the same (with
        `agree`; without, as the leader has them: a node may be stuck)."""
        leader = await self.wait_leader()
        await self.api.set_labels(leader, leader, {BARRIER_LABEL: str(time.monotonic())})
        parsed = [LabelKey.parse(key) for key in keys]
        owners = sorted({key.owner for key in parsed})

        async def view(node: str) -> dict[str, str]:
            labels = {owner: await self.api.labels(node, owner) for owner in owners}
            return {
                str(key): labels[key.owner][key.label]
                for key in parsed
                if key.label in labels[key.owner]
            }

        state = await view(leader)
        if not agree:
            return state

        async def everyone_agrees() -> bool:
            views = {node: await view(node) for node in self.names}
            assert all(v == state for v in views.values()), {
                node: _diff(state, v) for node, v in views.items() if v != state
            }
            return True

        await wait_for(
            everyone_agrees, timeout=RECOVERY_TIMEOUT, what="every node to hold the same labels"
        )
        return state

    async def tasks_in_state(self, service: str) -> list[TaskRecord]:
        """The service's tasks as the leader's replicated state has them."""
        rows = await self.api.tasks(await self.wait_leader(), service)
        return [TaskRecord(service, t["slot"], t["node_name"], t["state"]) for t in rows]

    async def tasks_on_hosts(self, service: str) -> list[TaskRecord]:
        """The service's task processes that really run, from each node's process records and
        the kernel, whatever the cluster state says."""
        found = []
        for name in self.names:
            for seen in await ProcessDriver(str(self.data_dir(name))).list_owned():
                if seen.service == service:
                    found.append(
                        TaskRecord(
                            service, seen.slot, name, "running" if seen.alive else seen.state
                        )
                    )
        return found

    async def where_everyone_stands(self) -> dict[str, object]:
        """Every running node's view of the cluster, for failure messages."""

        async def brief(name: str) -> object:
            try:
                return _brief(await self.api.cluster(name))
            except Exception as exc:  # an unreachable node is part of the picture
                return f"{exc.__class__.__name__}: {exc}"

        return {name: await brief(name) for name in self.running()}

    async def raft_connections(self) -> str:
        """`ss` of every host's TCP connections on the Raft port."""
        port = f"( sport = :{API_PORT + 1} or dport = :{API_PORT + 1} )"
        shown = []
        for name, host in self.hosts.items():
            done = await asyncio.to_thread(host.run, ["ss", "-tno", port], check=False)
            shown.append(f"{name}:\n{done.stdout}{done.stderr}")
        return "\n".join(shown)

    def crashed(self) -> dict[str, str]:
        """Nodes whose process ended on its own, with their log tails."""
        return {
            name: f"exit {p.returncode}:\n{p.log()[-3000:]}"
            for name, p in self.processes.items()
            if not p.alive
        }

    def log_tails(self, chars: int = 4000) -> str:
        return "\n".join(
            f"--- {name} ({p.log_path}) ---\n{p.log()[-chars:]}"
            for name, p in self.processes.items()
        )


def _brief(cluster: dict) -> dict:
    """The parts of `GET /v1/cluster` that say where a node stands."""
    leader = cluster["leader"]
    return {
        "leader": leader and leader["name"],
        "term": cluster["term"],
        "commit_index": cluster["commit_index"],
        "applied": cluster["applied"],
        "partners": cluster["this_node"]["raft_partners"],
        "connected": cluster["this_node"]["connected_partners"],
    }


def _diff(expected: dict[str, str], seen: dict[str, str]) -> dict[str, tuple]:
    return {
        k: (expected.get(k), seen.get(k))
        for k in sorted(set(expected) | set(seen))
        if expected.get(k) != seen.get(k)
    }
