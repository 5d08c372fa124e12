"""Every read of the replicated state is linearizable unless the caller asks for less.

Before a GET handler runs, the node obtains a read index (`RaftNode.read_index`: the
leader's commit index, confirmed by a quorum after the request arrived) and waits until its
own replica has applied it, so a read on any node sees every write acknowledged before the read began.
`?stale=1` skips that and reads this node's copy as it is. `?index=N` makes a blocking query:
the answer waits (up to `?wait=`, default 5 minutes) until the state has applied more than N
commands. Every answer says at what state it was served (`X-Shoal-Index`, the applied count
a watcher passes back as `index`) and whether this node knows a leader
(`X-Shoal-Known-Leader`).

Handlers stay as they are: this is a middleware, after the catch-up gate.
"""

from __future__ import annotations

import re
from typing import Protocol

from aiohttp import web

from consensus.raft import ProposeError
from node.api.catch_up import stale_allowed
from node.api.http_util import HttpError, error_response
from node.client import INDEX_HEADER, KNOWN_LEADER_HEADER

# How long a read may wait for its read index (a leader and a quorum) before answering 503.
READ_TIMEOUT = 5.0
DEFAULT_WAIT = 300.0
MAX_WAIT = 600.0
# What this node says about itself, not the replicated state: its health and Raft view,
# the gossip members and its routing mesh. No read index; they still carry the headers.
LOCAL_VIEWS = frozenset(
    {
        "/healthz",
        "/v1/cluster",
        "/v1/cluster/members",
        "/v1/mesh",
        "/v1/cluster/token",
        "/v1/cluster/recovery-key",
        # A voter's feed and read index for its members (node.feed): this node's copy.
        "/v1/internal/feed",
        "/v1/internal/read-index",
    }
)
_SERVED_AT = web.RequestKey("shoal_served_at", int)
# A read index the request obtained after it arrived (to confirm a scoped token): as good as
# the one this middleware would obtain, so a read does not wait for a second one.
CONFIRMED_INDEX = web.RequestKey("shoal_confirmed_index", int)
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m)?$")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, None: 1.0}


class Replica(Protocol):
    def applied(self) -> int: ...
    def leader(self) -> str | None: ...
    async def read_index(self, timeout: float = READ_TIMEOUT) -> int: ...
    async def wait_applied(self, index: int, timeout: float) -> bool: ...


def parse_wait(text: str) -> float:
    """`30s`, `500ms`, `2m` or plain seconds, at most MAX_WAIT."""
    match = _DURATION.match(text.strip())
    if match is None:
        raise HttpError(
            400, f"wait: expected a duration such as 30s, 500ms or 2m, got {text!r}", "wait"
        )
    seconds = float(match.group(1)) * _UNIT[match.group(2)]
    if seconds > MAX_WAIT:
        raise HttpError(400, f"wait: at most {MAX_WAIT:g}s, got {text!r}", "wait")
    return seconds


def parse_index(text: str) -> int:
    if not text.isdigit() or len(text) > 18:
        raise HttpError(
            400,
            f"index: expected a non-negative integer (an {INDEX_HEADER} value), got {text!r}",
            "index",
        )
    return int(text)


def consistency_middleware(replica: Replica):
    @web.middleware
    async def middleware(request: web.Request, handler):
        if request.method != "GET" or request.path in LOCAL_VIEWS:
            return await handler(request)
        query = request.query
        index = parse_index(query["index"]) if "index" in query else None
        wait = parse_wait(query["wait"]) if "wait" in query else DEFAULT_WAIT
        if not stale_allowed(request) and CONFIRMED_INDEX not in request:
            try:
                read_index = await replica.read_index(READ_TIMEOUT)
                caught_up = await replica.wait_applied(read_index, READ_TIMEOUT)
            except ProposeError as exc:
                return _unconfirmed(str(exc))
            if not caught_up:
                return _unconfirmed(
                    f"this node did not apply the read index {read_index} within {READ_TIMEOUT:g} s"
                )
        if index is not None:
            await replica.wait_applied(index + 1, wait)
        # Taken before the handler reads: the state served is at least this new, so a
        # watcher passing it back as `index` never misses a change.
        request[_SERVED_AT] = replica.applied()
        return await handler(request)

    return middleware


def _unconfirmed(reason: str) -> web.Response:
    response = error_response(
        503,
        f"cannot serve a linearizable read: {reason}; retry, ask another node, or add "
        f"?stale=1 to read this node's copy",
    )
    response.headers["Retry-After"] = "1"
    return response


def install(app: web.Application, replica: Replica) -> None:
    """Add the middleware (innermost) and the headers on every answer, streams included."""
    app.middlewares.append(consistency_middleware(replica))

    async def headers(request: web.Request, response: web.StreamResponse) -> None:
        response.headers[INDEX_HEADER] = str(request.get(_SERVED_AT, replica.applied()))
        response.headers[KNOWN_LEADER_HEADER] = "true" if replica.leader() else "false"

    app.on_response_prepare.append(headers)
