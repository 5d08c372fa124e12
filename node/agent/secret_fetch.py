"""Opening a task's secrets and configs just before the agent starts it.

The agent reads them from the replicated state in this process: only for a task assigned to
this node, meant to run, whose spec uses them (`consensus.secrets.delivery_problem`), and a
sealed secret is opened in memory with the cluster's key. The content lives on in the
RunSpec handed to the driver for this one start, nowhere else.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager

from consensus.secrets import blobs, delivery_problem
from consensus.state import ClusterState
from node.runtime.model import RunSpec, TaskFile
from node.secret_box import SecretBox, SecretSealError

# Fills in the content of a RunSpec's files; raises FetchError when one cannot be had.
FillFiles = Callable[[RunSpec], Awaitable[RunSpec]]


class FetchError(Exception):
    """A file's content could not be had; the text names the secret or config."""


class FileOpener:
    """Fills a task's files from the state `read_state` hands out, for the tasks of `node_id`."""

    def __init__(
        self,
        read_state: Callable[[], AbstractContextManager[ClusterState]],
        box: SecretBox,
        node_id: str,
    ) -> None:
        self._read_state = read_state
        self._box = box
        self._node_id = node_id

    async def fill(self, run: RunSpec) -> RunSpec:
        filled = [dataclasses.replace(f, data=self._open(run.task_id, f)) for f in run.files]
        return dataclasses.replace(run, files=tuple(filled))

    def _open(self, task_id: str, item: TaskFile) -> bytes:
        with self._read_state() as state:
            blob = blobs(state, item.kind).get(item.source)
            problem = delivery_problem(state, item.kind, item.source, task_id, self._node_id)
        if blob is None:
            raise FetchError(f"cannot fetch {item.kind} {item.source!r}: no such {item.kind}")
        if problem:
            raise FetchError(f"cannot fetch {item.kind} {item.source!r}: {problem}")
        if item.kind != "secret":
            return blob.data
        try:
            return self._box.open(item.source, blob.data)
        except SecretSealError as exc:
            raise FetchError(f"cannot open secret {item.source!r}: {exc}") from None
