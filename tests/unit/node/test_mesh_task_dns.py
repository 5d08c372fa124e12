"""Which resolver a task's containers get: the node's DNS, only where they can use it."""

from __future__ import annotations

import pytest

from consensus.services import ServiceSpec
from consensus.tasks import Task
from node.agent.translate import run_spec
from node.mesh.task_dns import task_dns_servers


@pytest.mark.parametrize(
    "address, port, expected",
    [
        ("10.0.0.5", 53, ("10.0.0.5",)),
        ("10.0.0.5", 7423, ()),  # resolv.conf has no port field
        ("127.0.0.2", 53, ()),  # inside a container, loopback is the container's own
        ("0.0.0.0", 53, ()),
        ("::1", 53, ()),
        ("fd00::5", 53, ("fd00::5",)),
        ("node1.example", 53, ()),  # resolv.conf takes addresses only
    ],
)
def test_task_dns_servers(address, port, expected):
    assert task_dns_servers(address, port) == expected


def test_tasks_given_the_nodes_dns_search_the_cluster_zone():
    task = Task("t1", "s1", "web", 1, 1, node_id="n1", state="assigned")
    spec = ServiceSpec("web", "busybox")
    with_dns = run_spec(task, spec, "10.0.0.5", task_dns_servers("10.0.0.5", 53))
    assert (with_dns.dns_servers, with_dns.dns_search) == (("10.0.0.5",), ("shoal",))
    without = run_spec(task, spec, "127.0.0.1", task_dns_servers("127.0.0.1", 7423))
    assert (without.dns_servers, without.dns_search) == ((), ())
