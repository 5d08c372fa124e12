"""Fetching a task's secrets and configs just before the agent starts it.

The agent asks a node's internal API (`GET /v1/internal/{secrets|configs}/NAME?task=ID`, with
the cluster's API token and this node's own key) for each file's content. That node gives it
out only for a task assigned to the node whose key came with the call and whose spec uses it,
and opens a sealed secret in memory.
The content lives on in the RunSpec handed to the driver for this one start, nowhere else.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
from typing import Awaitable, Callable

from node.client import ApiError, ShoalClient, Unreachable
from node.runtime.model import RunSpec, TaskFile

# Fills in the content of a RunSpec's files; raises FetchError when one cannot be had.
FillFiles = Callable[[RunSpec], Awaitable[RunSpec]]


class FetchError(Exception):
    """A file's content could not be fetched; the text names the secret or config."""


def internal_path(kind: str, name: str) -> str:
    return f"/v1/internal/{kind}s/{name}"


class FileFetcher:
    """Fetches through `client` (a node's API, with this node's credentials: the node it asks
    gives only what tasks assigned to the calling node use)."""

    def __init__(self, client: ShoalClient) -> None:
        self._client = client

    async def fill(self, run: RunSpec) -> RunSpec:
        filled = [dataclasses.replace(f, data=await self._fetch(run.task_id, f)) for f in run.files]
        return dataclasses.replace(run, files=tuple(filled))

    async def _fetch(self, task_id: str, item: TaskFile) -> bytes:
        try:
            answer = await self._client.get(internal_path(item.kind, item.source),
                                            task=task_id)
        except (ApiError, Unreachable) as exc:
            raise FetchError(f"cannot fetch {item.kind} {item.source!r}: {exc}") from None
        try:
            return base64.b64decode(answer["data"], validate=True)
        except (TypeError, KeyError, binascii.Error) as exc:
            raise FetchError(f"{item.kind} {item.source!r}: the answer holds no data ({exc})") from None
