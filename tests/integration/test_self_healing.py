"""Self-healing on real clusters of `shoal node` processes running tasks as plain processes
(`--runtime process`): spread, a killed node's slot replaced and its stale task stopped when
it returns, drain, a global service following a joining node, two replicas on one host, a
failing health check and a task killed by hand replaced per the restart policy."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import pytest

from node.localcluster import LocalCluster, NodeProc, wait_for
from node.runtime.process_records import load_record, task_dir
from node.runtime.procfs import is_running
from tests.integration.cluster_support import (
    SETTLE,
    SlotWatch,
    live,
    must,
    node_status,
    process_cluster,
    running_slots,
    running_spread,
    shoal,
    tasks_of,
    until_node,
)

pytestmark = pytest.mark.timeout(120)

SLEEPER = ("process", "sleep", "600")
# Replace at once: these tests are about whether a task is replaced, not when.
QUICK_RESTART = ("--restart-delay", "0.1s")


def http_server(address: str) -> tuple[str, ...]:
    """A task serving HTTP on the port the driver allocated it, on the node's own address."""
    return ("process", "sh", "-c", f"exec {sys.executable} -m http.server $PORT --bind {address}")


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """One 3-node cluster for the tests that leave its nodes as they found them; each of
    them names its own services."""
    with process_cluster(str(tmp_path_factory.mktemp("shared")), 3) as cluster:
        asyncio.run(cluster.start())
        yield cluster


@pytest.fixture
async def trio(fresh):
    cluster = fresh()
    await cluster.start()
    return cluster


def create(cluster: LocalCluster, name: str, *flags: str) -> None:
    must(shoal("service", "create", "--name", name, *flags, addr=cluster.nodes[0].api))


def process_of(node: NodeProc, task_id: str) -> tuple[int, int]:
    """The task's pid and start time, from the process driver's record on its node: together
    they name one process, even after its pid is reused."""
    record = load_record(node.data_dir, task_id)
    assert record is not None, f"no process record of task {task_id} on {node.name}"
    return record.pid, record.start_ticks


def node_named(cluster: LocalCluster, name: str) -> NodeProc:
    return next(n for n in cluster.nodes if n.name == name)


def by_id(tasks: list[dict], task_id: str) -> dict:
    return next(t for t in tasks if t["id"] == task_id)


async def test_replicas_spread_over_all_nodes_and_run(shared):
    create(shared, "spread", "--replicas", "3", *SLEEPER)
    tasks = await SlotWatch(shared, "spread").until(running_spread(3), "3 tasks running on 3 nodes")
    assert sorted(t["slot"] for t in tasks) == [1, 2, 3]
    assert {t["node_name"] for t in tasks} == {"n1", "n2", "n3"}
    for task in tasks:  # each is a real process on its own node
        assert is_running(*process_of(node_named(shared, task["node_name"]), task["id"]))
    rows = must(shoal("service", "ps", "spread", addr=shared.nodes[2].api)).splitlines()[1:]
    assert sorted((r.split()[2], r.split()[4]) for r in rows) == [
        ("n1", "running"),
        ("n2", "running"),
        ("n3", "running"),
    ]


async def test_a_killed_node_is_replaced_and_its_stale_task_stopped_when_it_returns(trio):
    create(trio, "web", "--replicas", "3", *SLEEPER)
    watch = SlotWatch(trio, "web")
    tasks = await watch.until(running_spread(3), "3 tasks running on 3 nodes")
    leader = await trio.leader_index()
    victim = next(n for i, n in enumerate(trio.nodes) if i != leader)
    (stale,) = [t for t in tasks if t["node_name"] == victim.name]
    stale_process = process_of(victim, stale["id"])

    victim.kill9()
    await until_node(trio, victim.name, "down", via=leader)

    def replaced(tasks: list[dict]) -> bool:
        return running_slots(3)(tasks) and victim.name not in {t["node_name"] for t in live(tasks)}

    tasks = await watch.until(replaced, f"the slot of {victim.name} running elsewhere")
    (successor,) = [t for t in live(tasks) if t["slot"] == stale["slot"]]
    # Told to stop while its node is down: orphaned, its agent stops it if the node returns.
    orphaned = by_id(tasks, stale["id"])
    assert (orphaned["desired"], orphaned["state"]) == ("shutdown", "orphaned")
    # Nothing on the dead node could stop its process: it still runs, but the slot is not its.
    assert is_running(*stale_process)

    victim.start()
    await until_node(trio, victim.name, "ready", via=leader)

    async def stale_process_gone() -> bool:
        return not is_running(*stale_process) and not os.path.exists(
            task_dir(victim.data_dir, stale["id"])
        )

    await wait_for(stale_process_gone, timeout=SETTLE, what=f"{victim.name} to stop its stale task")
    # The restarted agent adopted the stale process only to stop it; the slot stays with
    # its successor, and the process driver keeps no record of the stale task.
    tasks = await watch.until(running_slots(3), "3 tasks running")
    assert by_id(tasks, successor["id"])["state"] == "running"
    assert by_id(tasks, stale["id"])["state"] == "orphaned"
    watch.assert_never_doubled()


async def test_drain_moves_a_nodes_tasks_to_the_other_nodes(trio):
    create(trio, "web", "--replicas", "3", *SLEEPER)
    watch = SlotWatch(trio, "web")
    tasks = await watch.until(running_spread(3), "3 tasks running on 3 nodes")
    drained = trio.nodes[1]
    (moved,) = [t for t in tasks if t["node_name"] == drained.name]
    moved_process = process_of(drained, moved["id"])

    must(shoal("node", "update", drained.name, "--availability", "drain", addr=trio.nodes[0].api))

    def moved_off(tasks: list[dict]) -> bool:
        return (
            running_slots(3)(tasks)
            and drained.name not in {t["node_name"] for t in live(tasks)}
            and by_id(tasks, moved["id"])["state"] == "shutdown"
        )

    tasks = await watch.until(moved_off, f"the tasks of {drained.name} moved")
    assert by_id(tasks, moved["id"])["message"] == f"node {drained.name} is drained"
    assert not is_running(*moved_process)
    assert await node_status(trio, drained.name, via=2) == ("ready", "drain")
    watch.assert_never_doubled()


async def test_a_global_service_gains_a_task_when_a_node_joins(fresh):
    cluster = fresh()
    await cluster.start(count=2)
    create(cluster, "agent", "--mode", "global", *SLEEPER)
    watch = SlotWatch(cluster, "agent")

    def on(names: set[str]):
        return lambda tasks: (
            running_spread(len(names))(tasks) and {t["node_name"] for t in live(tasks)} == names
        )

    await watch.until(on({"n1", "n2"}), "a global task on each of 2 nodes")
    await cluster.add(cluster.nodes[2])
    tasks = await watch.until(on({"n1", "n2", "n3"}), "a global task on the joining node")
    (joined,) = [t for t in tasks if t["node_name"] == "n3"]
    assert is_running(*process_of(cluster.nodes[2], joined["id"]))
    watch.assert_never_doubled()


async def test_two_replicas_on_one_host_get_their_own_ports_and_both_serve(fresh):
    cluster = fresh(1)
    await cluster.start()
    node = cluster.nodes[0]
    create(
        cluster,
        "web",
        "--replicas",
        "2",
        "-p",
        "8080:8000",
        "--health-http",
        "/",
        "--health-interval",
        "0.2s",
        *http_server(node.address),
    )

    def healthy(tasks: list[dict]) -> bool:
        running = live(tasks)
        return len(running) == 2 and all(t["health"] == "healthy" for t in running)

    tasks = await SlotWatch(cluster, "web").until(healthy, "2 healthy replicas")
    bindings = [t["endpoint"]["ports"] for t in tasks if t in live(tasks)]
    assert [[(b["target"], b["protocol"]) for b in ports] for ports in bindings] == [
        [(8000, "tcp")],
        [(8000, "tcp")],
    ]
    host_ports = {ports[0]["host_port"] for ports in bindings}
    assert len(host_ports) == 2
    assert {t["endpoint"]["address"] for t in live(tasks)} == {node.address}
    for port in host_ports:  # the health checks passed; the servers answer the test too
        assert await http_status(node.address, port) == 200


async def http_status(host: str, port: int) -> int:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(b"GET / HTTP/1.0\r\n\r\n")
        return int((await reader.readline()).split()[1])
    finally:
        writer.close()


async def test_a_failing_health_check_fails_the_task_and_the_policy_replaces_it(shared):
    node = shared.nodes[0]
    # Pinned to one node so that the task's server can bind that node's address.
    create(
        shared,
        "unhealthy",
        "--constraint",
        f"node.hostname=={node.name}",
        "-p",
        "8080:8000",
        "--health-http",
        "/no-such-page",
        "--health-interval",
        "0.2s",
        "--health-start-period",
        "1s",
        "--health-retries",
        "1",
        *QUICK_RESTART,
        "--restart-max-attempts",
        "2",
        *http_server(node.address),
    )

    def attempts_used(tasks: list[dict]) -> bool:
        return any(t["restarts"] == 2 and t["state"] == "failed" for t in tasks)

    await SlotWatch(shared, "unhealthy").until(attempts_used, "the last attempt failed")
    # A scheduler round that saw the last failure: it placed a service created after it.
    create(shared, "marker", *SLEEPER)
    await SlotWatch(shared, "marker").until(running_spread(1), "a later service placed")

    tasks = sorted(await tasks_of(shared, "unhealthy"), key=lambda t: t["restarts"])
    assert [(t["slot"], t["restarts"], t["state"], t["health"]) for t in tasks] == [
        (1, n, "failed", "unhealthy") for n in range(3)
    ]
    for task in tasks:
        (port,) = task["endpoint"]["ports"]
        # Refused while its server started, or answered 404: either way the check failed.
        assert task["error"].startswith(
            f"health check failed: GET http://{node.address}:{port['host_port']}/no-such-page "
        ), task["error"]
    # Each failure was replaced until the policy's attempts ran out.
    assert [(t["desired"], t["message"]) for t in tasks[:2]] == [
        ("shutdown", "task failed: restarted")
    ] * 2
    assert tasks[2]["desired"] == "running"


async def test_a_task_process_killed_by_hand_is_replaced(shared):
    create(shared, "killed", *QUICK_RESTART, *SLEEPER)
    watch = SlotWatch(shared, "killed")
    (first,) = await watch.until(running_spread(1), "the task running")
    pid, _ = process_of(node_named(shared, first["node_name"]), first["id"])

    os.killpg(pid, signal.SIGKILL)

    def replaced(tasks: list[dict]) -> bool:
        return running_spread(1)(tasks) and live(tasks)[0]["id"] != first["id"]

    tasks = await watch.until(replaced, "a replacement running")
    killed = by_id(tasks, first["id"])
    assert (killed["state"], killed["desired"]) == ("failed", "shutdown")
    assert (killed["exit_code"], killed["error"]) == (128 + signal.SIGKILL, "killed by SIGKILL")
    (successor,) = live(tasks)
    assert (successor["slot"], successor["restarts"]) == (first["slot"], 1)
    assert is_running(*process_of(node_named(shared, successor["node_name"]), successor["id"]))
    watch.assert_never_doubled()
