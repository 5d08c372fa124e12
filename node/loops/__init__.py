"""The node's control loops. Each is built with what it reads and writes, and runs until it is
cancelled; the node starts them all once it holds the cluster's state."""

from __future__ import annotations

from typing import Protocol


class Loop(Protocol):
    async def run(self) -> None: ...
