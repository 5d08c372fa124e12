"""This node's part of the audit trail: the API writes it served, committed in batches.

The API records an entry after each answer (node.api.guard.audit_middleware) without
waiting; this loop commits what gathered within FLUSH_DELAY as one command (consensus.audit),
so writes cost at most 1/FLUSH_DELAY more commits a second per node, not one each. Without a
quorum the entries wait (up to PENDING_LIMIT, then the oldest are counted and dropped, so a
long outage cannot grow the node without bound) and go once a leader commits again. Entries not yet committed when
the node stops are lost: the trail is as durable as the gap of one batch.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from consensus.audit import MAX_BATCH, AuditEntry, RecordAudit
from consensus.raft import ProposeError
from consensus.state import Result

log = logging.getLogger(__name__)

PENDING_LIMIT = 10_000
FLUSH_DELAY = 0.1
RETRY_DELAY = 1.0


class AuditTrail:
    def __init__(
        self,
        submit: Callable[[Any], Awaitable[Result]],
        limit: int = PENDING_LIMIT,
        flush_delay: float = FLUSH_DELAY,
        retry_delay: float = RETRY_DELAY,
    ) -> None:
        self._submit = submit
        self._flush_delay, self._retry_delay = flush_delay, retry_delay
        self._pending: deque[AuditEntry] = deque(maxlen=limit)
        self._wake = asyncio.Event()
        self.dropped = 0

    @property
    def waiting(self) -> tuple[AuditEntry, ...]:
        """The entries not committed yet, oldest first."""
        return tuple(self._pending)

    def record(self, entry: AuditEntry) -> None:
        if len(self._pending) == self._pending.maxlen:
            self.dropped += 1
            if self.dropped % 1000 == 1:
                log.warning(
                    "audit trail: %d entries dropped while none could be committed", self.dropped
                )
        self._pending.append(entry)
        self._wake.set()

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            await asyncio.sleep(self._flush_delay)
            self._wake.clear()
            while self._pending:
                batch = [self._pending.popleft() for _ in range(min(MAX_BATCH, len(self._pending)))]
                try:
                    result = await self._submit(RecordAudit(tuple(batch)))
                except ProposeError as exc:
                    log.info("audit trail: %d entries wait for a quorum (%s)", len(batch), exc)
                    self._pending.extendleft(reversed(batch))
                    await asyncio.sleep(self._retry_delay)
                    continue
                if not result.ok:
                    log.error("audit trail: %d entries refused: %s", len(batch), result.error)
