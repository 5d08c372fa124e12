"""Load samples in the replicated state: what each node last measured of the autoscaled
services, for the leader's autoscaler (scheduler.autoscale).

A node proposes one `ReportMetrics` per interval at most, and none while its figures stay the
same: its row (one per node, keyed by node id) is replaced whole by each report, stamped with
the time the node measured at. `apply` reads no clock: how old a sample is, is the reader's
question. Rows of nodes that are gone and samples of services that are gone are dropped
whenever any report is applied.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from consensus.codec import command
from consensus.nodes import nodes
from consensus.state import ClusterState, Result, handles, register_table
from consensus.tasks import Service, services

METRICS = "metrics"


def _check_amount(name: str, value: float | None) -> None:
    if value is not None and not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{name}: must be a finite number >= 0, not {value!r}")


@dataclass(frozen=True, slots=True)
class ServiceSample:
    """One node's figures for one service over its last interval."""

    service: str  # by name
    service_id: str
    tasks: int = 0  # the service's running tasks on the node
    # Mean over those tasks, percent of one core; None when the runtime could not say.
    cpu_percent: float | None = None
    # Requests per second the node's load balancer forwarded to the service, on all of its
    # published ports (to replicas anywhere).
    rps: float = 0.0

    def __post_init__(self) -> None:
        if isinstance(self.tasks, bool) or self.tasks < 0:
            raise ValueError(f"tasks: must be 0 or more, not {self.tasks!r}")
        _check_amount("cpu_percent", self.cpu_percent)
        _check_amount("rps", self.rps)

    @property
    def idle(self) -> bool:
        return not self.rps and not self.cpu_percent


@dataclass(frozen=True, slots=True)
class NodeMetrics:
    """A node's latest report: its samples and when it measured them."""

    node_id: str
    at: float
    samples: tuple[ServiceSample, ...] = ()


@command("metrics.report")
@dataclass(frozen=True, slots=True)
class ReportMetrics:
    node_id: str
    at: float
    samples: tuple[ServiceSample, ...] = ()


register_table(METRICS, NodeMetrics)


def node_metrics(state: ClusterState) -> dict[str, NodeMetrics]:
    """The latest report of each node, by node id."""
    return state.table(METRICS)


def _current(sample: ServiceSample, table: dict[str, Service]) -> bool:
    service = table.get(sample.service)
    return service is not None and service.id == sample.service_id


@handles(ReportMetrics)
def _report(state: ClusterState, cmd: ReportMetrics) -> Result:
    known = nodes(state)
    if cmd.node_id not in known:
        return Result.fail(f"node_id: no such node {cmd.node_id!r}", 404)
    rows, table = node_metrics(state), services(state)
    previous = rows.get(cmd.node_id)
    if previous is not None and previous.at > cmd.at:
        return Result.fail(f"at: a newer report of node {cmd.node_id} is already in", 409)
    kept = tuple(s for s in cmd.samples if _current(s, table))
    rows[cmd.node_id] = NodeMetrics(cmd.node_id, cmd.at, kept)
    for node_id in [n for n in rows if n not in known]:
        del rows[node_id]
    for node_id, row in list(rows.items()):
        current = tuple(s for s in row.samples if _current(s, table))
        if current != row.samples:
            rows[node_id] = NodeMetrics(node_id, row.at, current)
    return Result(True, value={"kept": len(kept), "dropped": len(cmd.samples) - len(kept)})
