"""The leader's scheduling loop: the thin shell around the pure `schedule` round.

It sleeps until the state changes (or a restart backoff ends), and only while its node is
the Raft leader reads a consistent view, computes a round off the event loop, and proposes
the round's one batched command. It never pushes work to nodes: agents converge to what
the committed command says.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from consensus.state import Result
from scheduler.rounds import entries, schedule
from scheduler.view import StateView

log = logging.getLogger(__name__)


def random_ids(block: int = 1024) -> Iterator[str]:
    """Random 128-bit task ids, as uuid4 makes them, but one read of the kernel's random
    source per `block` ids: a round creating 10,000 tasks spent more on 10,000 reads of it
    than on placing them."""
    while True:
        pool = os.urandom(16 * block)
        for i in range(0, len(pool), 16):
            yield pool[i : i + 16].hex()


def _no_effect(result: Result) -> bool:
    value = result.value if isinstance(result.value, dict) else {}
    return not result.ok or not any(n for k, n in value.items() if k != "rejected")


class SchedulerLoop:
    """`changed` must be set after every commit and leadership change, and cleared by this
    loop only. `read_state` returns a StateView of one version of the state
    (`StateView.capture(store.view())`)."""

    def __init__(
        self,
        *,
        read_state: Callable[[], StateView],
        changed: asyncio.Event,
        propose: Callable[[Any], Awaitable[Result]],
        is_leader: Callable[[], bool],
        clock: Callable[[], float] = time.time,
        new_id: Callable[[], str] | None = None,
        retry_delay: float = 1.0,
        observe_round: Callable[[float], None] = lambda seconds: None,
    ) -> None:
        """`observe_round` is told how long each round took to plan."""
        self._read_state = read_state
        self._observe_round = observe_round
        self._changed = changed
        self._propose = propose
        self._is_leader = is_leader
        self._clock = clock
        self._new_id = new_id or random_ids().__next__
        self._retry_delay = retry_delay
        self._stopping = asyncio.Event()
        self._stopped = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self._wake_at: float | None = None
        self.rounds = 0  # rounds that proposed a command, for status pages and tests

    async def run(self) -> None:
        self._runner = asyncio.current_task()
        try:
            while await self._wait():
                self._changed.clear()
                if self._is_leader():
                    await self._round()
                else:
                    self._wake_at = None
        finally:
            self._stopped.set()

    async def stop(self, timeout: float = 5.0) -> None:
        """Ask `run` to return; cancel it if a round is still busy after `timeout` seconds."""
        self._stopping.set()
        if self._runner is None or self._stopped.is_set():
            return
        try:
            await asyncio.wait_for(self._stopped.wait(), timeout)
        except TimeoutError:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner

    async def _wait(self) -> bool:
        """Until the state changes, the wake-up time passes or we stop; False on stop."""
        timeout = None if self._wake_at is None else max(0.0, self._wake_at - self._clock())
        waiters = [
            asyncio.ensure_future(self._changed.wait()),
            asyncio.ensure_future(self._stopping.wait()),
        ]
        try:
            await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
        if self._wake_at is not None and self._clock() >= self._wake_at:
            self._wake_at = None
        return not self._stopping.is_set()

    async def _round(self) -> None:
        view = self._read_state()
        now = self._clock()
        # Seeded from the state index, so a round can be replayed from a snapshot.
        started = time.monotonic()
        rnd = await asyncio.to_thread(schedule, view, now, view.applied, self._new_id)
        self._observe_round(time.monotonic() - started)
        self._wake_at = rnd.wake_at
        commands = [*(entries(rnd.command) if rnd.command else ()), *rnd.rollouts, *rnd.jobs]
        if not commands or not self._is_leader():
            return
        results = []
        for command in commands:  # in order: rollout records name the tasks just created
            try:
                results.append(await self._propose(command))
            except Exception as exc:  # no quorum, lost leadership, timeout: try again later
                log.warning("scheduler: proposing a round failed: %s", exc)
                results.append(Result.fail(str(exc)))
                break
        self.rounds += 1
        if all(_no_effect(result) for result in results):
            # Nothing committed would change the next round either: wait, don't spin.
            log.warning(
                "scheduler: round changed nothing (%s)",
                "; ".join(f"{r.error} {r.value}" for r in results),
            )
            retry = self._clock() + self._retry_delay
            self._wake_at = retry if self._wake_at is None else min(self._wake_at, retry)
            self._changed.clear()
