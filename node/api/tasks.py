"""HTTP API for tasks: a task's output, streamed through any node.

`GET /v1/tasks/{id}/logs?follow=1&tail=N` streams the task's stdout and stderr as text. The
node that runs the task reads it from its runtime driver; any other node passes the stream on
from that node's API, asking with `local=1` so that two nodes whose states briefly disagree
about where the task runs cannot hand the request back and forth.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from urllib.parse import quote

from aiohttp import web

from consensus.nodes import nodes
from consensus.tasks import tasks
from node.api.context import NODE
from node.api.http_util import HttpError, parse_count, query_flag
from node.client import ApiError, ShoalClient, Unreachable

log = logging.getLogger(__name__)
routes = web.RouteTableDef()


@dataclass(frozen=True, slots=True)
class LogQuery:
    follow: bool = False
    tail: int | None = None  # the last N lines; None for all of them
    local: bool = False  # answer from this node only, never pass the request on


def parse_log_query(query: Mapping[str, str]) -> LogQuery:
    tail = query.get("tail", "all")
    lines = None if tail == "all" else parse_count(tail, "tail", "a number of lines or 'all'")
    return LogQuery(query_flag(query, "follow"), lines, query_flag(query, "local"))


async def _local_logs(request: web.Request, task_id: str, query: LogQuery) -> AsyncIterator[bytes]:
    shoal = request.app[NODE]
    agent = getattr(shoal, "agent", None)
    if agent is None:
        raise HttpError(503, f"node {shoal.node_id} runs no agent yet; retry shortly")
    seen = await agent.driver.inspect(task_id)
    if seen.state == "missing":
        raise HttpError(
            404,
            f"task {task_id} has no logs on node {shoal.node_id}: its "
            f"container or process has been removed",
        )
    return agent.driver.logs(task_id, follow=query.follow, tail=query.tail)


async def _remote_logs(client: ShoalClient, task_id: str, query: LogQuery) -> AsyncIterator[bytes]:
    params = {"follow": "1" if query.follow else "0", "local": "1"}
    if query.tail is not None:
        params["tail"] = str(query.tail)
    async for line in client.stream_lines(f"/v1/tasks/{quote(task_id, safe='')}/logs", **params):
        yield line.encode() + b"\n"


async def _stream(
    request: web.Request, chunks: AsyncIterator[bytes], *, wait_for_first: bool
) -> web.StreamResponse:
    """Send `chunks` as a chunked text response. With `wait_for_first`, an error raised
    before the first chunk (a passed-on stream's 404) still becomes an HTTP error; after
    the headers are out, an error can only end the stream, so it is written as its last line."""
    response = web.StreamResponse(headers={"Content-Type": "text/plain; charset=utf-8"})
    async with contextlib.aclosing(chunks):  # type: ignore[type-var]
        first = await anext(chunks, None) if wait_for_first else None
        await response.prepare(request)
        try:
            if first is not None:
                await response.write(first)
            async for chunk in chunks:
                await response.write(chunk)
        except (ApiError, Unreachable) as exc:
            log.info("log stream of %s ended early: %s", request.path, exc)
            await response.write(f"[shoal] the log stream ended early: {exc}\n".encode())
    await response.write_eof()
    return response


@routes.get("/v1/tasks/{id}/logs")
async def task_logs(request: web.Request) -> web.StreamResponse:
    shoal = request.app[NODE]
    query = parse_log_query(request.query)
    task_id = request.match_info["id"]
    with shoal.store.view() as state:
        task = tasks(state).get(task_id)
        node = nodes(state).get(task.node_id) if task is not None else None
    if task is None:
        raise HttpError(404, f"no such task {task_id!r}")
    if not task.node_id or task.state == "pending":
        raise HttpError(404, f"task {task_id} has not been placed on a node yet: it has no logs")
    if task.node_id == shoal.node_id:
        return await _stream(
            request, await _local_logs(request, task_id, query), wait_for_first=False
        )
    if query.local:
        raise HttpError(
            409, f"task {task_id} runs on node {task.node_id}, not on this node ({shoal.node_id})"
        )
    if node is None:
        raise HttpError(
            404,
            f"task {task_id} ran on node {task.node_id}, which has left the "
            f"cluster: its logs are gone",
        )
    return await _stream(
        request, _remote_logs(shoal.control.client_for(node), task_id, query), wait_for_first=True
    )
