"""The safety harness's callables against Shoal's HTTP API.

A history key is "OWNER/LABEL": the label LABEL on node OWNER. A write is a label update
(`PATCH /v1/nodes/OWNER`, acknowledged only after commit); a read returns the label as a
linearizable read through one node returns it, with the index of the state it was served from
(`X-Shoal-Index`); leadership is `GET /v1/cluster`'s term and leader.

    api = ShoalApi({"n0": "10.213.1.1:7420", ...}, api_token, session)
    await run_clients(nodes, api.write, api.read, workload, recorder)
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

from node.client import ApiError, ShoalClient, Unreachable
from tests.safety.harness import DefiniteFailure, ReadResult

# Statuses meaning "refused before anything was committed" (bad request, unknown node) or
# "committed as a no-op" (a conflict result): either way the label did not change.
_NOT_APPLIED = frozenset({400, 404, 409})
# 503 is the API's documented "no quorum / outcome unknown"; any other 5xx is a node failing.
_NO_QUORUM = 503


class ServerError(Exception):
    """A node answered with a 5xx other than 503: it failed on a request instead of refusing it."""


@dataclass(frozen=True, slots=True)
class LabelKey:
    owner: str
    label: str

    @staticmethod
    def parse(key: str) -> LabelKey:
        owner, sep, label = key.partition("/")
        if not sep or not owner or not label:
            raise ValueError(f"key: expected OWNER/LABEL, got {key!r}")
        return LabelKey(owner, label)

    def __str__(self) -> str:
        return f"{self.owner}/{self.label}"


def label_keys(owners: Sequence[str], per_owner: int, prefix: str = "safety.k") -> tuple[str, ...]:
    """`per_owner` keys on each owner node, interleaved so a random pick spreads over the nodes."""
    return tuple(
        str(LabelKey(owner, f"{prefix}{i:02d}")) for i in range(per_owner) for owner in owners
    )


class ShoalApi:
    """Talks to each node by name; one shared session, the cluster's API token.

    After a connection failure a call waits `unreachable_pause` before it raises, so a client
    pointed at a dead node records a few failures per second instead of spinning.
    """

    def __init__(
        self,
        addresses: Mapping[str, str],
        api_token: str,
        session: aiohttp.ClientSession,
        unreachable_pause: float = 0.2,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        """`ssl_context` verifies the nodes against the cluster's CA."""
        self._clients = {
            name: ShoalClient(address, api_token, session=session, ssl_context=ssl_context)
            for name, address in addresses.items()
        }
        self._pause = unreachable_pause

    async def _call(self, node: str, method: str, path: str, body: Any = None) -> Any:
        return await self._guarded(
            node, f"{method} {path}", self._clients[node].request(method, path, json_body=body)
        )

    async def _guarded(self, node: str, what: str, call: Awaitable[Any]) -> Any:
        try:
            return await call
        except Unreachable:
            await asyncio.sleep(self._pause)
            raise
        except ApiError as exc:
            if exc.status >= 500 and exc.status != _NO_QUORUM:
                raise ServerError(f"{node} {what}: HTTP {exc.status}: {exc}") from None
            raise

    async def cluster(self, node: str) -> dict:
        return await self._call(node, "GET", "/v1/cluster")

    async def nodes(self, node: str) -> list[dict]:
        return await self._call(node, "GET", "/v1/nodes")

    async def labels(self, node: str, owner: str) -> dict[str, str]:
        """OWNER's labels as `node` sees them."""
        return (await self._call(node, "GET", f"/v1/nodes/{owner}"))["labels"]

    async def set_labels(self, node: str, owner: str, labels: Mapping[str, str]) -> dict:
        return await self._call(node, "PATCH", f"/v1/nodes/{owner}", {"add_labels": dict(labels)})

    async def create_service(self, node: str, spec: Mapping[str, Any]) -> dict:
        return await self._call(node, "POST", "/v1/services", dict(spec))

    async def tasks(self, node: str, service: str) -> list[dict]:
        return await self._call(node, "GET", f"/v1/tasks?service={service}")

    # -- the harness's callables ----------------------------------------------------------
    async def write(self, node: str, key: str, value: str) -> None:
        target = LabelKey.parse(key)
        try:
            await self.set_labels(node, target.owner, {target.label: value})
        except ApiError as exc:
            if exc.status in _NOT_APPLIED:
                raise DefiniteFailure(f"HTTP {exc.status}: {exc}") from None
            raise

    async def read(self, node: str, key: str) -> ReadResult:
        """A linearizable read; its index is the one the answer says it was served at."""
        path = f"/v1/nodes/{LabelKey.parse(key).owner}"
        record, index = await self._guarded(
            node, f"GET {path}", self._clients[node].get_at_index(path)
        )
        return ReadResult(record["labels"].get(LabelKey.parse(key).label), index)

    async def leader_status(self, node: str) -> tuple[int, bool]:
        """The node's term, and whether it claims to lead it in two answers in a row.

        One answer of `GET /v1/cluster` reads pysyncobj's leader and term one after the other
        while its thread may change them, so it can pair the old term's leader with the new
        term. A real second leader keeps its claim across two reads a millisecond apart (until
        it hears of a newer term), so asking twice drops only the torn reads.
        """
        first, second = await self.cluster(node), await self.cluster(node)
        return second["term"], _claims_lead(first) and _claims_lead(second) and first[
            "term"
        ] == second["term"]


def _claims_lead(cluster: dict) -> bool:
    leader = cluster["leader"]
    return leader is not None and leader["id"] == cluster["this_node"]["id"]
