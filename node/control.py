"""Writes from any node: propose on the leader, or forward to it, within a bounded time.

A write is acknowledged only once Raft has committed it. The request id travels with the
command, so a forward retried after a lost answer is applied at most once.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
import ssl
import time
from collections.abc import Callable
from typing import Any

from consensus import codec
from consensus.model import Node
from consensus.nodes import nodes
from consensus.raft import NoQuorum, NotLeader, ProposeError, RaftNode
from consensus.state import Result
from node.client import ApiError, ShoalClient, Unreachable
from node.security import NodeCredentials

# Encoded commands forwarded to the leader; a scheduler round's batch of assignments is the
# largest.
COMMAND_TYPE = "application/msgpack"
MAX_COMMAND_BYTES = 4 << 20

# How long a write may wait for a leader and a commit before the API answers 503.
WRITE_TIMEOUT = 5.0


class ControlPlane:
    def __init__(
        self,
        raft: RaftNode,
        api_token: str,
        credentials: NodeCredentials,
        observe_commit: Callable[[float], None] = lambda seconds: None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        """`observe_commit` is told how long each committed write took, forwarding included;
        `ssl_context` verifies other nodes against the cluster's CA and presents this node's
        certificate (mutual TLS)."""
        self._ssl = ssl_context
        self.raft = raft
        self._observe_commit = observe_commit
        # Request ids: a random per-process prefix and a counter, unique across the cluster
        # and cheaper than a uuid4 per write.
        self._request_prefix = secrets.token_hex(8)
        self._request_seq = itertools.count()
        self._api_token = api_token
        self._credentials = credentials
        self._clients: dict[str, ShoalClient] = {}

    def node_by_raft_address(self, address: str | None) -> Node | None:
        if address is None:
            return None
        with self.raft.view() as state:
            for node in nodes(state).values():
                if node.raft_address == address:
                    return node
        return None

    def leader_node(self) -> Node | None:
        return self.node_by_raft_address(self.raft.leader())

    async def wait_for_leader(self, timeout: float = WRITE_TIMEOUT) -> Node | None:
        """The leader's node record, waiting out an election in progress."""
        deadline = time.monotonic() + timeout
        seen = self.raft.version
        while (leader := self.leader_node()) is None and time.monotonic() < deadline:
            seen = await self.raft.wait_changed(
                seen, timeout=min(0.25, deadline - time.monotonic())
            )
        return leader

    def client_for(self, node: Node) -> ShoalClient:
        return self.client_at(node.api_address)

    def client_at(self, api_address: str) -> ShoalClient:
        client = self._clients.get(api_address)
        if client is None:
            client = ShoalClient(
                api_address,
                self._api_token,
                timeout=WRITE_TIMEOUT,
                headers=self._credentials.headers,
                ssl_context=self._ssl,
            )
            self._clients[api_address] = client
        return client

    async def close(self) -> None:
        for client in self._clients.values():
            await client.close()
        self._clients.clear()

    def new_request_id(self) -> str:
        return f"{self._request_prefix}-{next(self._request_seq)}"

    async def submit(self, cmd: Any, *, timeout: float = WRITE_TIMEOUT) -> Result:
        return await self.submit_bytes(codec.encode(cmd, self.new_request_id()), timeout=timeout)

    async def submit_bytes(self, data: bytes, *, timeout: float = WRITE_TIMEOUT) -> Result:
        """Commit an encoded command through the leader, wherever it is. Raises NoQuorum
        when no leader commits it within `timeout`."""
        started = time.monotonic()
        result = await self._commit(data, started + timeout, timeout)
        self._observe_commit(time.monotonic() - started)
        return result

    async def _commit(self, data: bytes, deadline: float, timeout: float) -> Result:
        seen = self.raft.version
        last_error = "no leader elected"
        while (remaining := deadline - time.monotonic()) > 0:
            if self.raft.is_leader():
                try:
                    return await self.raft.propose_bytes(data, timeout=remaining)
                except NotLeader as exc:
                    last_error = str(exc)
                    continue
            leader = self.leader_node()
            if leader is not None:
                try:
                    result = await self._forward_while_leading(leader, data, remaining)
                    await self.catch_up(result.index, deadline)
                    return result
                except (NotLeader, Unreachable) as exc:
                    last_error = f"leader {leader.name} ({leader.api_address}): {exc}"
            # Wait for the next change of leadership or state instead of spinning.
            seen = await self.raft.wait_changed(seen, timeout=min(0.25, max(remaining, 0.01)))
        raise NoQuorum(f"no quorum: could not commit within {timeout:g} s ({last_error})")

    async def leader_elsewhere(self) -> Node | None:
        """The leader's node record when another node leads, None when this one does;
        NoQuorum when no leader is elected within the write timeout."""
        leader = await self.wait_for_leader()
        if leader is None:
            raise NoQuorum("no leader elected; the cluster has no quorum")
        if leader.raft_address == self.raft.address and self.raft.is_leader():
            return None
        return leader

    async def relay(self, leader: Node, method: str, path: str, body: bytes | None) -> Any:
        """The leader's answer to a whole request that only the leader may carry out (a join,
        a voter change, removing a node). Such a request is several steps, not one command
        with an id, so it is sent once and never resent to a later leader as a command is.
        Returns once this node has applied what the leader had, as a forwarded write does."""
        client = self.client_for(leader)
        answer = await client.request(method, path, data=body, content_type="application/json")
        await self.catch_up((await client.get("/v1/cluster"))["applied"])
        return answer

    async def catch_up(self, index: int, deadline: float | None = None) -> None:
        """Wait (briefly, bounded) until this node has applied `index` commands: a node
        that forwarded a write answers only once its own reads show it."""
        deadline = deadline if deadline is not None else time.monotonic() + WRITE_TIMEOUT
        seen = self.raft.version
        while time.monotonic() < deadline:
            with self.raft.view() as state:
                if state.applied >= index:
                    return
            seen = await self.raft.wait_changed(seen, timeout=deadline - time.monotonic())

    async def _forward_while_leading(self, leader: Node, data: bytes, remaining: float) -> Result:
        """Forward to `leader`, but give up on it as soon as this node knows another leader:
        a leader that was paused or cut off holds the request until the deadline, while its
        successor can commit it now. The request id makes the resend idempotent."""
        forward = asyncio.ensure_future(self._forward(leader, data, remaining))
        moved: asyncio.Future | None = None
        seen = self.raft.version
        try:
            while True:
                moved = asyncio.ensure_future(self.raft.wait_changed(seen))
                done, _ = await asyncio.wait({forward, moved}, return_when=asyncio.FIRST_COMPLETED)
                if forward in done:
                    return forward.result()
                seen = moved.result()
                current = self.raft.leader()
                if current is not None and current != leader.raft_address:
                    raise NotLeader(f"leadership moved to {current} while the request waited")
        finally:
            forward.cancel()
            if moved is not None:
                moved.cancel()

    async def _forward(self, leader: Node, data: bytes, remaining: float) -> Result:
        client = self.client_for(leader)
        try:
            raw = await asyncio.wait_for(
                client.request(
                    "POST", "/v1/internal/propose", data=data, content_type=COMMAND_TYPE
                ),
                timeout=remaining,
            )
        except TimeoutError:
            raise NoQuorum(
                f"no quorum: leader {leader.name} did not commit within the deadline"
            ) from None
        except ApiError as exc:
            if exc.status == 421:
                raise NotLeader(exc.message) from None
            if exc.status == 503:
                raise NoQuorum(exc.message) from None
            raise ProposeError(exc.message, retryable=False) from None
        return Result.from_plain(raw["result"])
