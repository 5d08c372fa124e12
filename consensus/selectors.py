"""Port selectors in the replicated state: a Kubernetes Service applied without its workload.

kubectl keeps a Service until it is deleted, and its selector picks up whatever pods match,
whenever they arrive. Shoal keeps such a Service as a `PortSelector`: its ports, and its
name on its network (where the services it selects then answer to it, at their VIP or, when
headless, at their tasks' addresses), are given to every service whose labels hold its
selector, those there when it is applied and those applied after (an apply adds them to the
spec it writes, so applying the workload's file again keeps them). Removing its stack
removes it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from consensus.codec import command
from consensus.networks import network_name_problem
from consensus.services import PortSpec
from consensus.state import ClusterState, Result, handles, register_table

TABLE = "port_selectors"
MAX_SELECTORS = 1_000
MAX_ENTRIES = 32
_NAME = re.compile(r"[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?")


@dataclass(frozen=True, slots=True)
class PortSelector:
    name: str  # the Service's name
    selector: dict[str, str]
    ports: tuple[PortSpec, ...]
    stack: str = ""
    where: str = ""  # the document it came from, for warnings
    network: str = ""  # where its name answers the services it selects ("": nowhere)
    headless: bool = False  # they get no VIP there: the name answers their tasks' addresses

    def selects(self, labels: dict[str, str]) -> bool:
        return bool(self.selector) and all(labels.get(k) == v for k, v in self.selector.items())


register_table(TABLE, PortSelector)


def port_selectors(state: ClusterState) -> dict[str, PortSelector]:
    return state.table(TABLE)


def selector_problem(selector: PortSelector) -> str:
    if not _NAME.fullmatch(selector.name):
        return f"name: {selector.name[:64]!r} is not a Service name"
    if (
        not selector.selector
        or len(selector.selector) > MAX_ENTRIES
        or len(selector.ports) > MAX_ENTRIES
    ):
        return f"selector: needs 1-{MAX_ENTRIES} labels and at most {MAX_ENTRIES} ports"
    if (
        any(len(k) + len(v) > 512 for k, v in selector.selector.items())
        or len(selector.where) > 512
    ):
        return "selector: a label is too long"
    if selector.network and network_name_problem(selector.network):
        return f"network: {network_name_problem(selector.network)}"
    return ""


@command("selector.put")
@dataclass(frozen=True, slots=True)
class PutSelector:
    selector: PortSelector


@command("selector.delete")
@dataclass(frozen=True, slots=True)
class DeleteSelector:
    name: str


@handles(PutSelector)
def _put(state: ClusterState, cmd: PutSelector) -> Result:
    problem = selector_problem(cmd.selector)
    if problem:
        return Result.fail(problem, 400)
    table = port_selectors(state)
    held = table.get(cmd.selector.name)
    if held is not None and held.stack != cmd.selector.stack:
        return Result.fail(
            f"name: Service {cmd.selector.name!r} belongs to stack {held.stack!r}", 409
        )
    if held is None and len(table) >= MAX_SELECTORS:
        return Result.fail(f"the cluster holds at most {MAX_SELECTORS} port selectors", 409)
    table[cmd.selector.name] = cmd.selector
    return Result(True, value={"name": cmd.selector.name})


@handles(DeleteSelector)
def _delete(state: ClusterState, cmd: DeleteSelector) -> Result:
    if port_selectors(state).pop(cmd.name, None) is None:
        return Result.fail(f"no such port selector {cmd.name!r}", 404)
    return Result(True, value={"name": cmd.name})
