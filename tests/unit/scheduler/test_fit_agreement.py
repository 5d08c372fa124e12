"""The scheduler and `apply`'s re-check agree on which nodes a task fits: on random clusters
whose nodes changed after their tasks were placed (down, drained, relabelled, re-registered
smaller than what they hold), a node passes the scheduler's filters exactly when `apply`
accepts the task there, and every plan `place` makes for it commits."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.nodes import RegisterNode, UpdateNode
from consensus.tasks import Assignment, AssignTasks, Task, services, tasks
from scheduler.filters import Pipeline
from scheduler.nodeinfo import node_infos
from scheduler.placement import place
from scheduler.view import StateView
from tests.unit.scheduler.helpers import Cluster, make_node

MiB = 1 << 20
ZONES = ("a", "b")
CONSTRAINTS = (None, "node.labels.zone==a", "node.labels.zone!=b")

nodes = st.lists(st.tuples(st.integers(0, 3000), st.integers(0, 3000)), min_size=1, max_size=6)
workloads = st.lists(
    st.tuples(
        st.integers(0, 6),
        st.integers(0, 1200),
        st.integers(0, 1200),
        st.sampled_from(CONSTRAINTS),
        st.booleans(),
    ),
    max_size=3,
)
# After placement: per node, (status, availability, zone, shrink to this fraction or None).
changes = st.lists(
    st.tuples(
        st.sampled_from(["ready", "ready", "ready", "down"]),
        st.sampled_from(["active", "active", "active", "pause", "drain"]),
        st.sampled_from(ZONES),
        st.sampled_from([None, 0.0, 0.5, 0.5]),
    ),
    max_size=6,
)
# Reserving nothing of a resource is common and a case of its own: often 0.
amounts = st.one_of(st.just(0), st.integers(1, 1500))
probes = st.tuples(amounts, amounts, st.sampled_from(CONSTRAINTS), st.booleans())


def plain(name: str, replicas: int, cpu: int, memory: int, constraint, host_port: bool) -> dict:
    out = {
        "name": name,
        "replicas": replicas,
        "resources": {"reservations": {"cpu_millis": cpu, "memory_bytes": memory * MiB}},
    }
    if constraint:
        out["constraints"] = [constraint]
    if host_port:
        out["ports"] = [{"target": 80, "published": 9000, "mode": "host"}]
    return out


@settings(max_examples=80, deadline=None)
@given(nodes, workloads, changes, probes, st.integers(0, 1000))
def test_the_scheduler_and_apply_agree_on_what_fits(
    node_sizes, workload, node_changes, probe, seed
):
    cluster = Cluster()
    for i, (cpu, memory) in enumerate(node_sizes):
        cluster.add_node(make_node(i, cpu=cpu, memory=memory * MiB, labels={"zone": ZONES[i % 2]}))
    for s, row in enumerate(workload):
        cluster.create(**plain(f"s{s}", *row))
    cluster.round(seed)
    for i, (status, availability, zone, shrink) in enumerate(node_changes[: len(node_sizes)]):
        node_id = f"n{i}"
        cluster.node_status(node_id, status)
        cluster.ok(UpdateNode(node_id, set_labels={"zone": zone}, availability=availability))
        if shrink is not None:
            cpu, memory = node_sizes[i]
            cluster.ok(
                RegisterNode(make_node(i, cpu=int(cpu * shrink), memory=int(memory * shrink) * MiB))
            )

    cluster.create(**plain("probe", 0, *probe))
    service = services(cluster.state)["probe"]
    spec = service.spec
    task = Task(
        "probe-1",
        service.id,
        "probe",
        1,
        service.version,
        reserved=spec.resources.reservations,
        host_ports=spec.host_ports,
    )
    cluster.ok(AssignTasks(cluster.now, create=(task,)))

    view = StateView.capture(cluster.state)
    infos = node_infos(view.nodes, view.tasks.values())
    pipeline = Pipeline(task, spec)
    for node_id, info in infos.items():
        trial = cluster.state.trial_copy()
        result = trial.apply(AssignTasks(cluster.now, assign=(Assignment(task.id, node_id),)))
        accepted = result.value["assigned"] == 1
        assert accepted == pipeline.passes(info), (
            node_id,
            result.value["rejected"],
            pipeline.explain([info]),
        )

    plan = place(view, [tasks(cluster.state)[task.id]], seed)
    committed = cluster.ok(AssignTasks(cluster.now, assign=plan.placements)).value
    assert committed["rejected"] == [] and committed["assigned"] == len(plan.placements)
    if plan.unplaceable:  # then no node takes it
        assert not any(pipeline.passes(info) for info in infos.values())


def test_a_task_reserving_nothing_fits_a_node_already_holding_more_than_it_has():
    """A node re-registered smaller than its tasks' reservations takes no more of what it
    lacks, but a task reserving none of it still fits there, for the scheduler and `apply`
    alike (each used to decide this its own way, so `apply` refused what was planned)."""
    cluster = Cluster()
    cluster.add_node(make_node(0, cpu=1000, memory=1024 * MiB))
    cluster.create(**plain("big", 1, 800, 800, None, False))
    cluster.round()
    cluster.ok(RegisterNode(make_node(0, cpu=500, memory=500 * MiB)))
    cluster.create(**plain("free", 1, 0, 0, None, False))
    cluster.round()
    free = next(t for t in tasks(cluster.state).values() if t.service == "free")
    assert (free.state, free.node_id) == ("assigned", "n0")
    cluster.create(**plain("small", 1, 0, 1, None, False))
    cluster.round()
    small = next(t for t in tasks(cluster.state).values() if t.service == "small")
    assert small.state == "pending" and "insufficient memory on 1 node" in small.message
